//! The API's `/metrics`: on a listener of its own when asked (the API's port then answers 404),
//! latency and requests counted with bounded labels, and still served while Redis is down.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use qfrefund_e2e::{env_for, qfrefund_bin};
use testkit::{RedisServer, unique_namespace};

#[tokio::test]
async fn metrics_on_their_own_listener_with_bounded_labels_and_while_redis_is_down() {
    let redis = RedisServer::start().unwrap();
    let mut env = env_for(&redis.url(), &unique_namespace("metrics-serve"), "http://127.0.0.1:1");
    env.insert("QFREFUND_API_LISTEN".into(), "127.0.0.1:0".into());
    env.insert("QFREFUND_API_METRICS_LISTEN".into(), "127.0.0.1:0".into());
    env.insert("QFREFUND_API_TOKENS".into(), "ops:read:metrics-token-0123456789".into());
    let mut child = Command::new(qfrefund_bin())
        .arg("serve")
        .env_clear()
        .envs(&env)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let (mut api, mut metrics) = (String::new(), String::new());
    out.read_line(&mut api).unwrap();
    out.read_line(&mut metrics).unwrap();
    let api = api.trim().strip_prefix("listening on ").unwrap().to_owned();
    let metrics = metrics.trim().strip_prefix("metrics on ").unwrap().to_owned();
    let http = reqwest::Client::new();
    let status = |r: reqwest::Response| r.status().as_u16();
    assert_eq!(status(http.get(format!("{api}/metrics")).send().await.unwrap()), 404, "not on the API's port");
    let listed = http
        .get(format!("{api}/v1/refunds?state=queued"))
        .bearer_auth("metrics-token-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(status(listed), 200);
    let brew = reqwest::Method::from_bytes(b"BREW").unwrap();
    let _ = http.request(brew, format!("{api}/v1/refunds")).send().await.unwrap();
    let text = http.get(&metrics).send().await.unwrap().text().await.unwrap();
    assert!(text.contains(r#"qfrefund_api_requests_total{route="/v1/refunds",method="GET",status="200"} 1"#), "{text}");
    assert!(text.contains(r#"method="other""#), "an unknown method is `other`: {text}");
    assert!(!text.contains("BREW"), "{text}");
    assert!(
        text.contains(r#"qfrefund_api_request_seconds_bucket{route="/v1/refunds",method="GET",le="0.005"}"#),
        "{text}"
    );
    assert!(text.contains(r#"component="api"} 1"#) && text.contains("qfrefund_ledger_up 1"), "{text}");
    assert!(text.contains("process_open_fds"), "{text}");
    // Redis gone: the process's own series are still there, and say the ledger is not.
    drop(redis);
    let down = http.get(&metrics).send().await.unwrap();
    assert_eq!(status_of(&down), 200);
    let text = down.text().await.unwrap();
    assert!(text.contains("qfrefund_ledger_up 0") && text.contains("qfrefund_api_requests_total"), "{text}");
    assert!(!text.contains("qfrefund_refunds{"), "no stale ledger gauge: {text}");
    let _ = child.kill();
    let _ = child.wait();
}

fn status_of(r: &reqwest::Response) -> u16 {
    r.status().as_u16()
}
