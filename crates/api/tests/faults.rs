//! What the API answers when Redis cannot take a refund now (frozen, full) or the refund names a
//! merchant nobody can send for.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use ledger::{LedgerConfig, NewRefund, State};
use reqwest::StatusCode;
use serde_json::json;
use testkit::{RedisServer, TestRedis, unique_namespace};

#[tokio::test]
async fn a_refund_for_a_merchant_nobody_knows_is_refused_and_one_nobody_serves_is_visible() {
    let redis = TestRedis::start().unwrap();
    let api = Api::start(&redis.url(), "api-merchant").await;
    let mut body = refund("RF-M1", 1);
    body["merchant"] = json!("nobody");
    let (status, resp) = api.send("POST", "/v1/refunds", Some(PRODUCER), Some(body.clone())).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{resp}");
    assert_eq!(resp["fields"][0]["field"], "merchant");
    assert!(resp["fields"][0]["problem"].as_str().unwrap().contains("known merchants: default"), "{resp}");
    assert!(api.ledger.get("default", "RF-M1").await.unwrap().is_none(), "nothing written");
    // A merchant only a live worker holds credentials for is known too.
    api.ledger.announce_served(&["nobody".into()], Duration::from_secs(30)).await.unwrap();
    let (status, resp) = api.send("POST", "/v1/refunds", Some(PRODUCER), Some(body)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{resp}");
    // A refund waiting for a merchant no live worker serves shows in /metrics.
    let mut ghost = NewRefund::new("555", "RF-M2", 1);
    ghost.merchant = Some("ghost".into());
    api.ledger.enqueue(ghost).await.unwrap();
    let (_, metrics) = api.send("GET", "/metrics", None, None).await;
    let metrics = metrics.as_str().unwrap();
    assert!(metrics.contains("qfrefund_unserved_refunds{merchant=\"ghost\"} 1"), "{metrics}");
    assert!(metrics.contains("qfrefund_webhooks_failed 0"), "the gauge docs/metrics.md lists: {metrics}");
    assert!(
        metrics.contains("qfrefund_unserved_refunds{merchant=\"default\"} 0")
            || !metrics.contains("merchant=\"nobody\""),
        "{metrics}"
    );
}

#[tokio::test]
async fn readyz_is_not_ready_when_redis_answers_but_refuses_writes_at_maxmemory() {
    let redis = RedisServer::builder()
        .arg("--maxmemory")
        .arg("3mb")
        .arg("--maxmemory-policy")
        .arg("noeviction")
        .start()
        .unwrap();
    let api = Api::start(&redis.url(), "api-ready-oom").await;
    assert_eq!(api.send("GET", "/readyz", None, None).await.0, StatusCode::OK);
    // Large values first, then ever smaller ones: a rejected large one only looked full because of
    // its own query buffer.
    let (mut full, mut size) = (false, 256 * 1024);
    let mut raw = testkit::raw_connection(&redis.url()).await;
    for i in 0..10_000 {
        let r: redis::RedisResult<()> =
            redis::cmd("SET").arg(format!("junk:{i}")).arg("x".repeat(size)).query_async(&mut raw).await;
        if r.is_err() {
            if size == 64 {
                full = true;
                break;
            }
            size /= 4;
        }
    }
    assert!(full, "Redis reached maxmemory");
    let (status, body) = api.send("GET", "/readyz", None, None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "PING answers, but no refund can be written: {body}");
    assert!(body["message"].as_str().unwrap().contains("OOM"), "{body}");
    assert_eq!(body["error"], "unavailable", "{body}");
    let (status, body) = api.send("POST", "/v1/refunds", Some(PRODUCER), Some(refund("RF-OOM", 1))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "refused before it ran: nothing written: {body}");
    assert!(body["message"].as_str().unwrap().contains("nothing was written"), "{body}");
}

/// Redis frozen while a POST waits: the write sits in Redis' socket buffer and is applied when
/// Redis resumes. The answer cannot know, so it must not say "not created".
#[tokio::test]
async fn a_503_never_claims_nothing_was_written_when_redis_froze_mid_request() {
    let redis = RedisServer::start().unwrap();
    let config = LedgerConfig {
        namespace: unique_namespace("api-frozen"),
        response_timeout: Duration::from_millis(700),
        ..LedgerConfig::default().with_shards(testkit::test_shards())
    };
    let api = Api::start_with(&redis.url(), config).await;
    // A running ledger has its scripts loaded (a first EVALSHA would only answer NOSCRIPT).
    let (status, _) = api.send("POST", "/v1/refunds", Some(PRODUCER), Some(refund("RF-WARM", 100))).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    redis.pause(true).unwrap();
    let (status, body) = api.send("POST", "/v1/refunds", Some(PRODUCER), Some(refund("RF-FROZEN", 100))).await;
    redis.pause(false).unwrap();
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
    assert_eq!(body["error"], "outcome_unknown", "{body}");
    let msg = body["message"].as_str().unwrap();
    assert!(msg.contains("outcome unknown: retry with the same out_trade_no — it is idempotent"), "{msg}");
    assert!(!msg.contains("nothing was"), "{msg}");
    // It was in fact written: that is why the answer could not say "not created".
    let mut written = None;
    for _ in 0..50 {
        if let Ok(Some(r)) = api.ledger.get("default", "RF-FROZEN").await {
            written = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(written.is_some(), "the frozen write was applied when Redis resumed");
    // Retrying the same request is what the answer told the producer to do: one refund.
    let (status, body) = api.send("POST", "/v1/refunds", Some(PRODUCER), Some(refund("RF-FROZEN", 100))).await;
    assert_eq!(status, StatusCode::OK, "the retry finds the refund: {body}");
    assert_eq!(api.ledger.counts().await.unwrap()[0], (State::Queued, 2));
}

/// A request past `api.request_timeout_ms` (Redis frozen, its own timeout longer): a read is `408`
/// ("nothing was changed, try again"), a write `504 outcome_unknown` (it may yet be applied), both
/// in the JSON error envelope.
#[tokio::test]
async fn a_request_past_its_time_is_408_for_a_read_and_504_for_a_write() {
    let redis = RedisServer::start().unwrap();
    let config = LedgerConfig {
        namespace: unique_namespace("api-408"),
        response_timeout: Duration::from_secs(10),
        ..LedgerConfig::default().with_shards(testkit::test_shards())
    };
    let api = Api::start_tweaked(&redis.url(), config, |c| c.request_timeout = Duration::from_millis(300)).await;
    let (status, _) = api.send("POST", "/v1/refunds", Some(PRODUCER), Some(refund("RF-WARM", 100))).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    redis.pause(true).unwrap();
    let started = std::time::Instant::now();
    let (read, read_body) = api.send("GET", "/v1/refunds/RF-WARM", Some(PRODUCER), None).await;
    let waited = started.elapsed();
    let (write, write_body) = api.send("POST", "/v1/refunds", Some(PRODUCER), Some(refund("RF-LATE", 100))).await;
    redis.pause(false).unwrap();
    assert_eq!(read, StatusCode::REQUEST_TIMEOUT, "{read_body}");
    assert_eq!(read_body["error"], "timeout", "the JSON envelope: {read_body}");
    assert!(waited < Duration::from_secs(5), "answered at the API's limit, not Redis': {waited:?}");
    assert_eq!(write, StatusCode::GATEWAY_TIMEOUT, "{write_body}");
    assert_eq!(write_body["error"], "outcome_unknown", "{write_body}");
}
