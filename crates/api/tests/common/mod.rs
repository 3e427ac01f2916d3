//! The API served over real HTTP against a real redis-server, for the suites in this directory.

#![allow(clippy::unwrap_used, dead_code)]

use ledger::{Ledger, LedgerConfig};
use qfpay::{ClientKey, SignAlg};
use qfrefund_api::{ApiConfig, ApiToken, NotifyKey, Role};
use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::unique_namespace;

pub const PRODUCER: &str = "producer-token-0123456789";
pub const READER: &str = "reader-token-0123456789";
pub const OPERATOR: &str = "operator-token-0123456789";
/// A second operator (four-eyes).
pub const OPERATOR2: &str = "operator-two-token-0123456789";
pub const NOTIFY_KEY: &str = "NOTIFY0KEY0FOR0TESTS0000000000000";

pub struct Api {
    pub url: String,
    pub ledger: Ledger,
    pub http: reqwest::Client,
}

impl Api {
    pub async fn start(redis_url: &str, name: &str) -> Self {
        Self::start_with(
            redis_url,
            LedgerConfig {
                namespace: unique_namespace(name),
                ..LedgerConfig::default().with_shards(testkit::test_shards())
            },
        )
        .await
    }

    pub async fn start_with(redis_url: &str, config: LedgerConfig) -> Self {
        Self::start_archived(redis_url, config, None).await
    }

    /// An API behind a trusted authenticating proxy (the console's proxy sign-in).
    #[allow(dead_code)]
    pub async fn start_proxied(redis_url: &str, name: &str, proxy: qfrefund_api::ConsoleProxy) -> Self {
        let config = LedgerConfig { namespace: testkit::unique_namespace(name), ..LedgerConfig::default() };
        Self::start_full(redis_url, config, None, proxy, |_| {}).await
    }

    /// An API that reads archived refunds from `archive` (the workers' archive setting).
    pub async fn start_archived(redis_url: &str, config: LedgerConfig, archive: Option<String>) -> Self {
        Self::start_full(redis_url, config, archive, qfrefund_api::ConsoleProxy::default(), |_| {}).await
    }

    /// An API whose configuration `tweak` changes after the tests' usual one is made.
    #[allow(dead_code)]
    pub async fn start_tweaked(redis_url: &str, config: LedgerConfig, tweak: impl FnOnce(&mut ApiConfig)) -> Self {
        Self::start_full(redis_url, config, None, qfrefund_api::ConsoleProxy::default(), tweak).await
    }

    async fn start_full(
        redis_url: &str,
        config: LedgerConfig,
        archive: Option<String>,
        console_proxy: qfrefund_api::ConsoleProxy,
        tweak: impl FnOnce(&mut ApiConfig),
    ) -> Self {
        let ledger = Ledger::connect(redis_url, config).await.unwrap();
        let mut api_config = ApiConfig {
            tokens: vec![
                ApiToken::new("shop", Role::Produce, PRODUCER).unwrap(),
                ApiToken::new("dashboard", Role::Read, READER).unwrap(),
                ApiToken::new("ann", Role::Operate, OPERATOR).unwrap(),
                ApiToken::new("bob", Role::Operate, OPERATOR2).unwrap(),
            ],
            notify_keys: vec![NotifyKey {
                merchant: "default".into(),
                key: ClientKey::new(NOTIFY_KEY.to_owned()),
                alg: SignAlg::Md5,
            }],
            body_limit: 8 * 1024,
            merchants: vec!["default".into()],
            archive,
            console_proxy,
            ..ApiConfig::default()
        };
        tweak(&mut api_config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = qfrefund_api::app(ledger.clone(), api_config);
        tokio::spawn(qfrefund_api::serve(listener, app, std::future::pending()));
        Self { url, ledger, http: reqwest::Client::new() }
    }

    pub async fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method.parse().unwrap(), format!("{}{path}", self.url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }
}

pub fn refund(otn: &str, txamt: u64) -> Value {
    json!({"syssn": "20251125000000000000000001", "out_trade_no": otn, "txamt": txamt, "orig_txamt": 10_000})
}
