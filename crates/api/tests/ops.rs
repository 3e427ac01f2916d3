//! The ops API: "enquire now", a refund's timeline and attempts, stats, the audit trail, the live
//! workers, pausing and resuming a merchant — over real HTTP against a real redis-server, with
//! the roles enforced on the server.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use ledger::{ClaimOptions, NewRefund, Policy, State};
use reqwest::StatusCode;
use serde_json::json;
use testkit::TestRedis;

/// Sends `otn` to QFPay (as a worker would) and records QFPay's "processing" (1143) with the
/// request's evidence: pending, its enquiry seconds away.
async fn send_and_pend(l: &ledger::Ledger, otn: &str) {
    let p = Policy { lease: Duration::from_secs(5), ..Policy::default() };
    let rec = l.get("default", otn).await.unwrap().unwrap();
    let (fence, rec) = match l.claim(&(&rec).into(), &ClaimOptions::new("w", &p, "t")).await.unwrap() {
        ledger::Claim::Submit { fence, record, .. } => (fence, *record),
        other => panic!("{other:?}"),
    };
    let answer = qfpay::RefundResponse { respcd: Some("1143".into()), ..Default::default() };
    let d = ledger::machine::after_submit(&rec, &ledger::SubmitResult::Answer(answer), &p, l.now_ms(), 0.5);
    let evidence = qfpay::Evidence {
        call: "refund".into(),
        sent_at: l.now_ms(),
        took_ms: 12,
        params: [("out_trade_no".to_owned(), otn.to_owned())].into_iter().collect(),
        sign_sha256: "ab".repeat(32),
        sign_type: "MD5".into(),
        http_status: Some(200),
        body: Some(r#"{"respcd":"1143"}"#.into()),
        body_truncated: false,
        error: None,
        fenced_off: false,
    };
    assert!(l.transition(&rec, State::Submitting, fence, &d.with_evidence(&evidence), "op").await.unwrap());
}

#[tokio::test]
async fn enquire_now_needs_an_operator_and_a_reason_and_only_brings_the_enquiry_forward() {
    let redis = TestRedis::start().unwrap();
    let api = Api::start(&redis.url(), "api-enquire").await;
    for otn in ["RF-P", "RF-Q"] {
        let (status, _) = api.send("POST", "/v1/refunds", Some(PRODUCER), Some(refund(otn, 100))).await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    send_and_pend(&api.ledger, "RF-P").await;
    let before = api.ledger.get("default", "RF-P").await.unwrap().unwrap();
    assert!(before.next_at > api.ledger.now_ms());
    let why = Some(json!({"reason": "the customer is on the phone"}));
    let path = "/v1/merchants/default/refunds/RF-P/enquire";
    assert_eq!(api.send("POST", path, Some(READER), why.clone()).await.0, StatusCode::FORBIDDEN);
    assert_eq!(api.send("POST", path, None, why.clone()).await.0, StatusCode::UNAUTHORIZED);
    let (status, body) = api.send("POST", path, Some(OPERATOR), Some(json!({}))).await;
    assert_eq!((status, body["fields"][0]["field"].clone()), (StatusCode::UNPROCESSABLE_ENTITY, json!("reason")));
    let (status, body) = api.send("POST", path, Some(OPERATOR), why.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!((body["refund"]["state"].as_str(), body["refund"]["operator"].as_str()), (Some("pending"), Some("ann")));
    assert!(body["refund"]["next_at"].as_i64().unwrap() <= api.ledger.now_ms(), "due now: {body}");
    // A queued refund has nothing to enquire: refused (409), and audited.
    let (status, body) = api.send("POST", "/v1/refunds/RF-Q/enquire", Some(OPERATOR), why).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::CONFLICT, Some("refused")), "{body}");
    let (status, body) = api.send("GET", "/v1/audit", Some(READER), None).await;
    assert_eq!(status, StatusCode::OK);
    let entries = body["entries"].as_array().unwrap();
    let seen: Vec<(&str, &str)> =
        entries.iter().map(|e| (e["out_trade_no"].as_str().unwrap(), e["outcome"].as_str().unwrap())).collect();
    assert_eq!(seen[0], ("RF-P", "ok"));
    assert!(seen[1].0 == "RF-Q" && seen[1].1.starts_with("refused"), "{seen:?}");
    assert_eq!((entries[0]["action"].as_str(), entries[0]["who"].as_str()), (Some("enquire"), Some("ann")));
}

#[tokio::test]
async fn a_refunds_timeline_and_attempts_are_served_to_readers() {
    let redis = TestRedis::start().unwrap();
    let api = Api::start(&redis.url(), "api-history").await;
    api.send("POST", "/v1/refunds", Some(PRODUCER), Some(refund("RF-H", 100))).await;
    send_and_pend(&api.ledger, "RF-H").await;
    let (status, body) = api.send("GET", "/v1/merchants/default/refunds/RF-H/events", Some(READER), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let states: Vec<&str> = body["events"].as_array().unwrap().iter().map(|e| e["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["queued", "submitting", "pending"]);
    assert_eq!((body["archived"].as_bool(), body["events"][2]["respcd"].as_str()), (Some(false), Some("1143")));
    let (status, body) = api.send("GET", "/v1/merchants/default/refunds/RF-H/attempts", Some(READER), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let a = &body["attempts"][0];
    assert_eq!(
        (a["call"].as_str(), a["http_status"].as_u64(), a["body"].as_str()),
        (Some("refund"), Some(200), Some(r#"{"respcd":"1143"}"#))
    );
    assert_eq!(body["attempts"].as_array().unwrap().len(), 1);
    for path in ["/v1/merchants/default/refunds/NOPE/events", "/v1/merchants/default/refunds/NOPE/attempts"] {
        let (status, body) = api.send("GET", path, Some(READER), None).await;
        assert_eq!((status, body["error"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")), "{path}: {body}");
    }
    let (status, _) = api.send("GET", "/v1/merchants/bad%20name/refunds/RF-H/events", Some(READER), None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        api.send("GET", "/v1/merchants/default/refunds/RF-H/events", None, None).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn stats_workers_and_the_audit_trail_page_by_page() {
    let redis = TestRedis::start().unwrap();
    let api = Api::start(&redis.url(), "api-fleet").await;
    for i in 0..3 {
        api.ledger.enqueue(NewRefund::new(&format!("9{i}"), &format!("RF-{i}"), 1)).await.unwrap();
    }
    let me = ledger::WorkerInfo {
        name: "qfrefund-1-abcd".into(),
        host: "pod-7".into(),
        version: "0.1.0".into(),
        concurrency: 32,
        in_flight: 3,
        merchants: vec!["default".into()],
        shards: vec![0],
        started_at: api.ledger.now_ms(),
        heartbeat_at: 0,
        until: 0,
    };
    api.ledger.register_worker(&me, Duration::from_secs(10)).await.unwrap();
    let gone = ledger::WorkerInfo { name: "qfrefund-2-dead".into(), ..me.clone() };
    api.ledger.register_worker(&gone, Duration::from_millis(1)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;

    let (status, body) = api.send("GET", "/v1/workers", Some(READER), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let workers = body["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 1, "a worker past its heartbeat is not live: {body}");
    assert_eq!((workers[0]["host"].as_str(), workers[0]["in_flight"].as_u64()), (Some("pod-7"), Some(3)));
    let (status, body) = api.send("GET", "/v1/stats", Some(READER), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!((body["by_state"]["queued"].as_u64(), body["live_workers"].as_u64()), (Some(3), Some(1)));
    let metrics = api.http.get(format!("{}/metrics", api.url)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("\nqfrefund_workers 1\n"), "{metrics}");

    // Pause and resume, audited; only an operator may.
    let why = Some(json!({"reason": "rotating its key"}));
    assert_eq!(
        api.send("POST", "/v1/merchants/default/pause", Some(READER), why.clone()).await.0,
        StatusCode::FORBIDDEN
    );
    let (status, body) = api.send("POST", "/v1/merchants/default/pause", Some(OPERATOR), why.clone()).await;
    assert_eq!((status, body["changed"].as_bool()), (StatusCode::OK, Some(true)), "{body}");
    let (_, body) = api.send("POST", "/v1/merchants/default/pause", Some(OPERATOR), why.clone()).await;
    assert_eq!(body["changed"].as_bool(), Some(false), "already paused");
    let (_, body) = api.send("GET", "/v1/stats", Some(READER), None).await;
    assert!(body["paused"]["default"].as_str().unwrap().contains("rotating its key"), "{body}");
    let (status, body) = api.send("POST", "/v1/merchants/default/resume", Some(OPERATOR), why).await;
    assert_eq!(
        (status, body["paused"].as_bool(), body["changed"].as_bool()),
        (StatusCode::OK, Some(false), Some(true))
    );
    let (status, _) =
        api.send("POST", "/v1/merchants/default/resume", Some(OPERATOR), Some(json!({"reason": ""}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    // The audit trail, a page at a time.
    let (status, body) = api.send("GET", "/v1/audit?limit=2", Some(READER), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let first: Vec<String> =
        body["entries"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap().to_owned()).collect();
    assert_eq!(first.len(), 2, "{body}");
    let next = body["next"].as_str().unwrap().to_owned();
    let (_, body) = api.send("GET", &format!("/v1/audit?after={next}&limit=2"), Some(READER), None).await;
    let rest: Vec<&str> = body["entries"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(rest, ["resume"], "pause, pause (no change), resume: {first:?} {rest:?}");
    assert!(body["next"].is_null());
    for bad in ["/v1/audit?limit=0", "/v1/audit?limit=1001", "/v1/audit?after=abc", "/v1/audit?after=1-2-3"] {
        let (status, body) = api.send("GET", bad, Some(READER), None).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
    }
}

#[tokio::test]
async fn given_up_webhooks_are_listed_and_redelivered_by_an_operator_with_a_reason() {
    let redis = TestRedis::start().unwrap();
    let api = Api::start(&redis.url(), "api-hooks").await;
    let id = format!("evt_{}", "0123456789abcdef".repeat(2));
    let attempt = ledger::WebhookAttempt {
        event_id: &id,
        out_trade_no: "RF-W",
        merchant: "default",
        body: b"{}",
        attempts: 8,
        error: "HTTP 502",
    };
    api.ledger.give_up_webhook(&attempt).await.unwrap();
    let (status, body) = api.send("GET", "/v1/webhooks/failed", Some(READER), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let f = &body["failed"][0];
    assert_eq!(
        (f["event_id"].as_str(), f["attempts"].as_u64(), f["last_error"].as_str()),
        (Some(id.as_str()), Some(8), Some("HTTP 502"))
    );
    assert_eq!(
        api.send("GET", "/v1/webhooks/failed?limit=0", Some(READER), None).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );

    let path = "/v1/webhooks/redeliver";
    let good = json!({"event_ids": [id], "reason": "receiver fixed"});
    assert_eq!(api.send("POST", path, Some(READER), Some(good.clone())).await.0, StatusCode::FORBIDDEN);
    for (bad, field) in [
        (json!({"reason": "x"}), "event_ids"),
        (json!({"event_ids": [id], "all": true, "reason": "x"}), "all"),
        (json!({"event_ids": ["RF-1"], "reason": "x"}), "event_ids"),
        (json!({"event_ids": [id]}), "reason"),
        (json!({"event_ids": [id], "reason": "x", "extra": 1}), "body"),
    ] {
        let (status, body) = api.send("POST", path, Some(OPERATOR), Some(bad.clone())).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
        if field != "body" {
            assert_eq!(body["fields"][0]["field"].as_str(), Some(field), "{bad}: {body}");
        }
    }
    let (status, body) = api.send("POST", path, Some(OPERATOR), Some(good.clone())).await;
    assert_eq!((status, body["rescheduled"].as_u64()), (StatusCode::OK, Some(1)), "{body}");
    let (_, body) = api.send("POST", path, Some(OPERATOR), Some(good)).await;
    assert_eq!(body["rescheduled"].as_u64(), Some(0), "no longer given up");
    let (_, body) = api.send("GET", "/v1/webhooks/failed", Some(READER), None).await;
    assert!(body["failed"].as_array().unwrap().is_empty());
    let (_, body) = api.send("GET", "/v1/audit", Some(READER), None).await;
    let e = &body["entries"][0];
    assert_eq!(
        (e["action"].as_str(), e["who"].as_str(), e["why"].as_str()),
        (Some("redeliver"), Some("ann"), Some("receiver fixed"))
    );
}

#[tokio::test]
async fn a_bulk_action_says_first_what_it_would_change_then_acts_on_each_refund_with_its_audit() {
    let redis = TestRedis::start().unwrap();
    let api = Api::start(&redis.url(), "api-bulk").await;
    for (otn, amt) in [("RF-B1", 100), ("RF-B2", 100), ("RF-B3", 200)] {
        let (status, _) = api.send("POST", "/v1/refunds", Some(PRODUCER), Some(refund(otn, amt))).await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    send_and_pend(&api.ledger, "RF-B2").await;
    let names =
        json!([{"out_trade_no": "RF-B1"}, {"out_trade_no": "RF-B2"}, {"merchant": "default", "out_trade_no": "RF-B3"}]);

    // A dry run (the default): what would change, nothing touched.
    let body = json!({"action": "cancel", "reason": "order withdrawn", "refunds": names});
    let (status, r) = api.send("POST", "/v1/bulk", Some(OPERATOR), Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!((r["dry_run"].as_bool(), r["matched"].as_u64(), r["changed"].as_u64()), (Some(true), Some(3), Some(2)));
    assert_eq!(r["changed_txamt"], 300, "{r}");
    assert_eq!(r["items"][1]["refused"], "is pending, not queued", "{r}");
    assert_eq!(r["items"][0]["to"], "cancelled");
    assert_eq!(api.ledger.get("default", "RF-B1").await.unwrap().unwrap().state, State::Queued);

    // For real, by a filter: only RF-B3 (200) is queued and at least 150.
    let filter = json!({"state": "queued", "min_txamt": 150});
    let body = json!({"action": "cancel", "reason": "order withdrawn", "dry_run": false, "filter": filter});
    let (status, _) = api.send("POST", "/v1/bulk", Some(OPERATOR), Some(body)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "a real run by a filter names what its dry run matched");
    let body =
        json!({"action": "cancel", "reason": "order withdrawn", "dry_run": false, "filter": filter, "expected": 2});
    let (status, _) = api.send("POST", "/v1/bulk", Some(OPERATOR), Some(body)).await;
    assert_eq!(status, StatusCode::CONFLICT, "the filter finds 1 now, not 2");
    let body =
        json!({"action": "cancel", "reason": "order withdrawn", "dry_run": false, "filter": filter, "expected": 1});
    let (status, r) = api.send("POST", "/v1/bulk", Some(OPERATOR), Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(
        (r["matched"].as_u64(), r["changed"].as_u64(), r["items"][0]["to"].as_str()),
        (Some(1), Some(1), Some("cancelled"))
    );
    assert_eq!(api.ledger.get("default", "RF-B3").await.unwrap().unwrap().state, State::Cancelled);
    assert_eq!(api.ledger.get("default", "RF-B1").await.unwrap().unwrap().state, State::Queued);
    let (_, audit) = api.send("GET", "/v1/audit", Some(READER), None).await;
    let last = audit["entries"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (last["out_trade_no"].as_str(), last["who"].as_str(), last["why"].as_str()),
        (Some("RF-B3"), Some("ann"), Some("order withdrawn")),
        "{last}"
    );
    // Enquire now, in bulk: the pending one's enquiry brought forward.
    let body = json!({"action": "enquire", "reason": "customer asks", "dry_run": false, "refunds": [{"out_trade_no": "RF-B2"}]});
    let (status, r) = api.send("POST", "/v1/bulk", Some(OPERATOR), Some(body)).await;
    assert_eq!((status, r["changed"].as_u64()), (StatusCode::OK, Some(1)), "{r}");

    // Above the amount one operator may act on alone: refused, nothing changed (a dry run is not).
    let big = json!({"syssn": "20251125000000000000000009", "out_trade_no": "RF-BIG", "txamt": 2_000_000, "orig_txamt": 5_000_000});
    let (status, _) = api.send("POST", "/v1/refunds", Some(PRODUCER), Some(big)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let body = json!({"action": "cancel", "reason": "x", "refunds": [{"out_trade_no": "RF-BIG"}]});
    assert_eq!(api.send("POST", "/v1/bulk", Some(OPERATOR), Some(body)).await.0, StatusCode::OK, "a dry run is not");
    let body = json!({"action": "cancel", "reason": "duplicate order", "dry_run": false, "refunds": [{"out_trade_no": "RF-BIG"}]});
    let (status, r) = api.send("POST", "/v1/bulk", Some(OPERATOR), Some(body)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{r}");
    assert!(r["message"].as_str().unwrap().contains("second operator"), "{r}");
    assert_eq!((r["approval"]["kind"].as_str(), r["approval"]["txamt"].as_u64()), (Some("bulk"), Some(2_000_000)));
    assert_eq!(api.ledger.get("default", "RF-BIG").await.unwrap().unwrap().state, State::Queued, "not yet");
    let approve = format!("/v1/approvals/{}/approve", r["approval"]["id"].as_str().unwrap());
    let yes = json!({"reason": "checked with the merchant"});
    assert_eq!(
        api.send("POST", &approve, Some(OPERATOR), Some(yes.clone())).await.0,
        StatusCode::CONFLICT,
        "not alone"
    );
    let (status, done) = api.send("POST", &approve, Some(OPERATOR2), Some(yes)).await;
    assert_eq!((status, done["status"].as_str()), (StatusCode::OK, Some("done")), "{done}");
    assert_eq!(api.ledger.get("default", "RF-BIG").await.unwrap().unwrap().state, State::Cancelled);
    let audit = api.ledger.audit("0", 100).await.unwrap();
    let last = audit.last().unwrap();
    assert_eq!((last.out_trade_no.as_str(), last.who.as_str()), ("RF-BIG", "bob (approving ann)"), "{audit:?}");
    assert!(last.why.contains("duplicate order") && last.why.contains("checked with the merchant"), "{last:?}");

    // Refused at the door: a reader; a misspelt or empty filter; both or neither; resolve; no reason.
    let ok = json!({"action": "cancel", "reason": "x", "filter": {"state": "queued"}});
    assert_eq!(api.send("POST", "/v1/bulk", Some(READER), Some(ok)).await.0, StatusCode::FORBIDDEN);
    for bad in [
        json!({"action": "cancel", "reason": "x", "filter": {"stat": "queued"}}),
        json!({"action": "cancel", "reason": "x", "filter": {}}),
        json!({"action": "cancel", "reason": "x", "filter": {"state": "queued"}, "refunds": [{"out_trade_no": "RF-B1"}]}),
        json!({"action": "cancel", "reason": "x"}),
        json!({"action": "resolve", "reason": "x", "refunds": [{"out_trade_no": "RF-B1"}]}),
        json!({"action": "cancel", "reason": " ", "refunds": [{"out_trade_no": "RF-B1"}]}),
        json!({"action": "cancel", "reason": "x", "refunds": []}),
        json!({"action": "cancel", "reason": "x", "filter": {"state": "queued", "min_txamt": -1}}),
        json!({"action": "cancel", "reason": "x", "filter": {"state": "queued", "merchant": null}}),
        json!({"action": "cancel", "reason": "x", "filter": {"state": "queued", "merchant": ""}}),
    ] {
        let (status, r) = api.send("POST", "/v1/bulk", Some(OPERATOR), Some(bad.clone())).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {r}");
    }
    assert_eq!(api.ledger.get("default", "RF-B1").await.unwrap().unwrap().state, State::Queued);
}
