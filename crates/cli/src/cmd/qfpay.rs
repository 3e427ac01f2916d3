//! `qfrefund qfpay refund|query`: one signed call, its answer printed as JSON.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use qfpay::time::DEFAULT_OFFSET_SECS;
use qfpay::{Client, ClientConfig, ClientKey, Credentials, EnquiryRequest, RefundRequest, SignAlg, Txdtm};

/// Where and who: the same environment variables the worker reads (and, as the worker does, the
/// files of `QFREFUND_SECRETS_DIR`). The client key is read from `QFPAY_CLIENT_KEY` only, never
/// from a flag, so it does not show in `ps` or shell history.
#[derive(Args, Debug)]
pub struct Endpoint {
    /// QFPay base URL, e.g. https://test-openapi-hk.qfapi.com or the simulator's address.
    #[arg(long, env = "QFPAY_BASE_URL")]
    base_url: Option<String>,
    #[arg(long, env = "QFPAY_APP_CODE")]
    app_code: Option<String>,
    /// Use this configured merchant's base URL, app code, key and mchid (`[merchants.NAME]`, or
    /// `default` from QFPAY_*) instead of the flags above.
    #[arg(long)]
    merchant: Option<String>,
    /// MD5 (QFPay's default) or SHA256.
    #[arg(long, env = "QFPAY_SIGN_ALG", default_value = "MD5")]
    sign_alg: SignAlg,
    /// The same default as the worker's.
    #[arg(long, env = "QFREFUND_HTTP_TIMEOUT_MS", default_value_t = qfpay::client::DEFAULT_TIMEOUT_MS)]
    http_timeout_ms: u64,
    /// The same default as the worker's.
    #[arg(long, env = "QFREFUND_HTTP_CONNECT_TIMEOUT_MS", default_value_t = qfpay::client::DEFAULT_CONNECT_TIMEOUT_MS)]
    http_connect_timeout_ms: u64,
}

#[derive(Subcommand, Debug)]
pub enum QfpayCommand {
    /// POST /trade/v1/refund once (no ledger, no retry, no enquiry): this moves real money outside
    /// the ledger, so anything but the simulator (a loopback URL) needs
    /// --i-understand-this-bypasses-the-ledger.
    Refund {
        /// Send it although nothing records it in the ledger: a later enqueue of the same refund
        /// would not know it was sent.
        #[arg(long = "i-understand-this-bypasses-the-ledger")]
        bypass_ledger: bool,
        #[command(flatten)]
        endpoint: Endpoint,
        #[arg(long)]
        syssn: String,
        #[arg(long)]
        out_trade_no: String,
        /// Minor units (100 = 1.00).
        #[arg(long)]
        amount: String,
        #[arg(long, env = "QFPAY_MCHID")]
        mchid: Option<String>,
        #[arg(long)]
        udid: Option<String>,
    },
    /// POST /trade/v1/query by syssn and/or out_trade_no, over the last --days days.
    Query {
        #[command(flatten)]
        endpoint: Endpoint,
        #[arg(long)]
        syssn: Vec<String>,
        #[arg(long)]
        out_trade_no: Vec<String>,
        #[arg(long, default_value_t = 31)]
        days: i64,
        #[arg(long, env = "QFPAY_MCHID")]
        mchid: Option<String>,
    },
}

/// Where to send, as whom, and the merchant's configured mchid (if any).
struct Target {
    base_url: String,
    creds: Credentials,
    mchid: Option<String>,
}

fn target(e: &Endpoint, config: Option<&Path>) -> anyhow::Result<Target> {
    if let Some(name) = &e.merchant {
        let m = crate::config::Config::load(config)?.merchant(name)?;
        return Ok(Target {
            base_url: m.base_url,
            creds: Credentials { app_code: m.app_code, key: m.key, alg: m.alg },
            mchid: m.mchid,
        });
    }
    let key = crate::settings::variable("QFPAY_CLIENT_KEY")?.context("QFPAY_CLIENT_KEY is not set")?;
    // Flags and the environment first (clap), then the secrets directory, as the worker reads them.
    let or_dir = |given: &Option<String>, var: &str| -> anyhow::Result<Option<String>> {
        Ok(match given {
            Some(v) => Some(v.clone()),
            None => crate::settings::variable(var)?,
        })
    };
    let base_url =
        or_dir(&e.base_url, "QFPAY_BASE_URL")?.context("--base-url (or QFPAY_BASE_URL, or --merchant) is required")?;
    let app_code =
        or_dir(&e.app_code, "QFPAY_APP_CODE")?.context("--app-code (or QFPAY_APP_CODE, or --merchant) is required")?;
    Ok(Target { base_url, creds: Credentials { app_code, key: ClientKey::new(key), alg: e.sign_alg }, mchid: None })
}

fn client(e: &Endpoint, t: Target) -> anyhow::Result<Client> {
    let config = ClientConfig {
        timeout: Duration::from_millis(e.http_timeout_ms),
        connect_timeout: Duration::from_millis(e.http_connect_timeout_ms),
        ..ClientConfig::default()
    };
    Ok(Client::new(Client::pool(&config)?, &t.base_url, t.creds)?)
}

/// The simulator runs on the operator's own host: a loopback address.
fn is_loopback(base_url: &str) -> bool {
    reqwest::Url::parse(base_url).ok().and_then(|u| u.host_str().map(str::to_owned)).is_some_and(|h| {
        let h = h.trim_start_matches('[').trim_end_matches(']');
        h == "localhost" || h.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
    })
}

pub async fn run(cmd: QfpayCommand, config: Option<&Path>) -> anyhow::Result<()> {
    let answer = match cmd {
        QfpayCommand::Refund { endpoint, bypass_ledger, syssn, out_trade_no, amount, mchid, udid } => {
            let t = target(&endpoint, config)?;
            if !bypass_ledger && !is_loopback(&t.base_url) {
                return Err(crate::exit::invalid(anyhow::anyhow!(
                    "refusing to refund through {} outside the ledger: nothing would record it, and a later enqueue of \
                     the same refund would not know it was sent. Use `qfrefund enqueue` for real refunds, or pass \
                     --i-understand-this-bypasses-the-ledger",
                    t.base_url
                )));
            }
            let mchid = mchid.or_else(|| t.mchid.clone());
            let txamt = qfpay::request::parse_txamt("amount", &amount)?;
            let req = RefundRequest::new(&syssn, &out_trade_no, txamt, Txdtm::now(DEFAULT_OFFSET_SECS))?
                .with_mchid(mchid.as_deref())?
                .with_udid(udid.as_deref())?;
            serde_json::to_value(client(&endpoint, t)?.refund(&req).await?)?
        }
        QfpayCommand::Query { endpoint, syssn, out_trade_no, days, mchid } => {
            let t = target(&endpoint, config)?;
            let mchid = mchid.or_else(|| t.mchid.clone());
            let now = Txdtm::now(DEFAULT_OFFSET_SECS);
            let from = Txdtm::from_unix(now.to_unix(DEFAULT_OFFSET_SECS) - days.max(0) * 86_400, DEFAULT_OFFSET_SECS);
            let syssn: Vec<&str> = syssn.iter().map(String::as_str).collect();
            let otn: Vec<&str> = out_trade_no.iter().map(String::as_str).collect();
            let req = EnquiryRequest::new(&syssn, &otn, Some((from, now)))?.with_mchid(mchid.as_deref())?;
            serde_json::to_value(client(&endpoint, t)?.enquire(&req).await?)?
        }
    };
    crate::output::one(&answer)?;
    Ok(())
}
