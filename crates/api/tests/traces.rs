//! A refund created over HTTP keeps the caller's W3C trace context (`traceparent`), so that the
//! workers' spans for it join the caller's trace; a malformed one is ignored, never a refusal.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use reqwest::StatusCode;
use testkit::TestRedis;

#[tokio::test]
async fn a_refund_keeps_the_callers_traceparent_and_a_malformed_one_is_ignored() {
    let redis = TestRedis::start().unwrap();
    let api = Api::start(&redis.url(), "api-traces").await;
    let post = |otn: &str, traceparent: &str| {
        api.http
            .post(format!("{}/v1/refunds", api.url))
            .bearer_auth(PRODUCER)
            .header("traceparent", traceparent)
            .json(&refund(otn, 10))
            .send()
    };
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    assert_eq!(post("RF-TP1", tp).await.unwrap().status(), StatusCode::ACCEPTED);
    let rec = api.ledger.get("default", "RF-TP1").await.unwrap().unwrap();
    assert_eq!(rec.traceparent.as_deref(), Some(tp));
    assert_eq!(post("RF-TP2", "00-zz-yy-01").await.unwrap().status(), StatusCode::ACCEPTED);
    assert_eq!(api.ledger.get("default", "RF-TP2").await.unwrap().unwrap().traceparent, None);
    // The same request under another trace is the same refund, keeping the first trace.
    let other = "00-11111111111111111111111111111111-2222222222222222-01";
    assert_eq!(post("RF-TP1", other).await.unwrap().status(), StatusCode::OK);
    assert_eq!(api.ledger.get("default", "RF-TP1").await.unwrap().unwrap().traceparent.as_deref(), Some(tp));
}
