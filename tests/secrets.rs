//! The secrets a deployment holds (QFPay client keys, webhook secrets, API tokens) never leave it:
//! a whole scenario runs with recognisable values — faults, a misconfigured merchant, failing
//! webhooks, bad API calls, debug logging — and none of them appears in any log line, error,
//! metric or Redis value.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use qfpay_sim::args::{generated_payment, generated_syssn};
use qfpay_sim::{Merchant, PaymentSeed};
use qfrefund_e2e::{Scratch, WorkerProcess, dump_redis, env_for, ledger, qfrefund_bin};
use testkit::{Faults, RedisServer, SimConfig, SimHandle, unique_namespace};

const CLIENT_KEY: &str = "CANARYCLIENTKEY7f3a9c1e5b2d4f60";
const WRONG_KEY: &str = "CANARYWRONGKEY11223344556677889";
const HOOK_SECRET: &str = "CANARYHOOKSECRET998877665544";
const API_TOKEN: &str = "CANARYAPITOKEN5544332211009988";
const CANARIES: [&str; 4] = [CLIENT_KEY, WRONG_KEY, HOOK_SECRET, API_TOKEN];

fn assert_clean(what: &str, text: &str) {
    for c in CANARIES {
        // Also a fragment: a secret cut short in a message is still a leak.
        assert!(!text.contains(&c[6..22]), "{what} contains a secret ({}…):\n{}", &c[..10], excerpt(text, &c[6..22]));
    }
}

fn excerpt(text: &str, needle: &str) -> String {
    text.lines().filter(|l| l.contains(needle)).take(3).collect::<Vec<_>>().join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_a_log_an_error_a_metric_or_redis() {
    let redis = RedisServer::start().unwrap();
    let sim_config = SimConfig {
        merchants: vec![
            Merchant { app_code: "CANARYAPP".into(), key: qfpay::ClientKey::new(CLIENT_KEY), mchid: None },
            Merchant { app_code: "SHOP2".into(), key: qfpay::ClientKey::new("THE-RIGHT-KEY-OF-SHOP2"), mchid: None },
        ],
        payments: (1..=23)
            .map(|i| PaymentSeed {
                app_code: Some(if i <= 20 { "CANARYAPP" } else { "SHOP2" }.into()),
                ..generated_payment(i, 10_000)
            })
            .collect(),
        faults: Faults {
            processing: 0.3,
            processing_ms: 300,
            error_5xx: 0.1,
            rate_limit_429: 0.1,
            drop_after_apply: 0.1,
            ..Faults::default()
        },
        ..SimConfig::demo(0)
    };
    let sim = SimHandle::start_local(sim_config).await.unwrap();
    let scratch = Scratch::new("secrets");
    let ns = unique_namespace("secrets");
    let mut env = env_for(&redis.url(), &ns, &sim.url());
    env.insert("QFPAY_APP_CODE".into(), "CANARYAPP".into());
    env.insert("QFPAY_CLIENT_KEY".into(), CLIENT_KEY.into());
    env.insert("RUST_LOG".into(), "debug".into());
    env.insert("QFREFUND_LOG_FORMAT".into(), "json".into());
    // A second merchant configured with the wrong key: QFPay refuses its signatures.
    let config = scratch.path("qfrefund.toml");
    std::fs::write(
        &config,
        format!(
            "[merchants.shop2]\napp_code = \"SHOP2\"\nclient_key_env = \"SHOP2_KEY\"\nbase_url = \"{}\"\n",
            sim.url()
        ),
    )
    .unwrap();
    env.insert("QFREFUND_CONFIG".into(), config.to_str().unwrap().into());
    env.insert("SHOP2_KEY".into(), WRONG_KEY.into());
    // Webhooks to nowhere: every attempt fails and is retried.
    env.insert("QFREFUND_WEBHOOK_URL".into(), "http://127.0.0.1:1/hook?token=abc".into());
    env.insert("QFREFUND_WEBHOOK_SECRET".into(), HOOK_SECRET.into());
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    env.insert("QFREFUND_METRICS_LISTEN".into(), format!("127.0.0.1:{metrics_port}"));
    env.insert("QFREFUND_API_LISTEN".into(), "127.0.0.1:0".into());
    env.insert("QFREFUND_API_TOKENS".into(), format!("shop:operate:{API_TOKEN}"));

    let mut worker = WorkerProcess::spawn(&env, scratch.path("worker.log"));
    let api_log = std::fs::File::create(scratch.path("api.log")).unwrap();
    let mut api = Command::new(qfrefund_bin())
        .arg("serve")
        .env_clear()
        .envs(&env)
        .stdout(Stdio::piped())
        .stderr(api_log)
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(api.stdout.take().unwrap()).read_line(&mut first).unwrap();
    let api_url = first.trim().strip_prefix("listening on ").unwrap().to_owned();
    let http = reqwest::Client::new();

    // 20 refunds for the good merchant through the API, 3 for the misconfigured one.
    for i in 1..=23u64 {
        let mut body =
            serde_json::json!({"syssn": generated_syssn(i), "out_trade_no": format!("RF-S{i}"), "txamt": 100});
        if i > 20 {
            body["merchant"] = "shop2".into();
        }
        let r = http.post(format!("{api_url}/v1/refunds")).bearer_auth(API_TOKEN).json(&body).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 202);
    }
    // Bad calls: a wrong token, a forbidden action, an unsigned and a mis-signed notification.
    let r = http.get(format!("{api_url}/v1/refunds/RF-S1")).bearer_auth(&API_TOKEN[..20]).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = http.post(format!("{api_url}/v1/qfpay/notify")).header("X-QF-SIGN", "00").body("{}").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);

    let l = ledger(&redis.url(), &ns).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mut recs = Vec::new();
        for i in 1..=23u64 {
            let merchant = if i > 20 { "shop2" } else { "default" };
            recs.extend(l.get(merchant, &format!("RF-S{i}")).await.unwrap());
        }
        let good_final = recs.iter().filter(|r| r.merchant == "default" && r.state.is_final()).count();
        let bad_tried = recs.iter().filter(|r| r.merchant == "shop2" && r.submits > 0).count();
        if good_final == 20 && bad_tried >= 1 && l.stats().await.unwrap().webhooks_retrying > 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "scenario did not play out");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let worker_metrics =
        reqwest::get(format!("http://127.0.0.1:{metrics_port}/metrics")).await.unwrap().text().await.unwrap();
    let api_metrics = reqwest::get(format!("{api_url}/metrics")).await.unwrap().text().await.unwrap();
    let statuses: Vec<String> = (1..=23)
        .map(|i| {
            let o = Command::new(qfrefund_bin())
                .args(["status", &format!("RF-S{i}")])
                .env_clear()
                .envs(&env)
                .output()
                .unwrap();
            String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr)
        })
        .collect();
    let events = Command::new(qfrefund_bin()).arg("events").env_clear().envs(&env).output().unwrap();
    worker.terminate();
    let _ = api.kill();
    let _ = api.wait();

    let worker_log = std::fs::read_to_string(scratch.path("worker.log")).unwrap();
    let api_log = std::fs::read_to_string(scratch.path("api.log")).unwrap();
    // The scenario really went through the paths that could leak.
    assert!(worker_log.contains("submitted") && worker_log.contains("enquired"), "worker log too thin");
    assert!(worker_log.contains("shop2"), "the misconfigured merchant shows up in the log");
    assert!(worker_log.to_lowercase().contains("webhook"), "webhook failures are logged");
    assert!(worker_metrics.contains("qfrefund_settled_total"), "{worker_metrics}");
    assert!(api_log.contains("enqueue"), "api log too thin");
    assert_clean("the worker's log", &worker_log);
    assert_clean("the API's log", &api_log);
    assert_clean("the worker's metrics", &worker_metrics);
    assert_clean("the API's metrics", &api_metrics);
    assert_clean("`qfrefund status` output", &statuses.join("\n"));
    assert_clean("`qfrefund events` output", &String::from_utf8_lossy(&events.stdout));
    let dump = dump_redis(&redis.url()).await;
    assert!(dump.contains("RF-S1"), "the dump has the records");
    assert_clean("Redis", &dump);
}
