//! The HTTP API over real HTTP against a real redis-server.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use ledger::{ClaimOptions, Ledger, NewRefund, Policy, State};
use qfpay::{ClientKey, SignAlg};
use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::{RedisServer, TestRedis};

mod common;

use common::*;

#[tokio::test]
async fn enqueue_is_idempotent_conflicts_show_differences_and_invalid_fields_are_named() {
    let redis = TestRedis::start().unwrap();
    let api = Api::start(&redis.url(), "api-enqueue").await;
    let resp = api
        .http
        .post(format!("{}/v1/refunds", api.url))
        .bearer_auth(PRODUCER)
        .json(&refund("RF-1", 500))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(resp.headers()["location"], "/v1/refunds/RF-1");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["refund"]["state"], "queued");
    assert_eq!(body["url"], "/v1/refunds/RF-1");

    let (status, body) = api.send("POST", "/v1/refunds", Some(PRODUCER), Some(refund("RF-1", 500))).await;
    assert_eq!(status, StatusCode::OK, "same request again: the refund as it is");
    assert_eq!(body["refund"]["out_trade_no"], "RF-1");

    let (status, body) = api.send("POST", "/v1/refunds", Some(PRODUCER), Some(refund("RF-1", 700))).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error"], "conflict");
    assert!(body["differences"][0].as_str().unwrap().contains("txamt"), "{body}");
    assert_eq!(body["existing"]["txamt"], 500);

    let bad = json!({"syssn": 42, "out_trade_no": "", "txamt": -1, "colour": "red"});
    let (status, body) = api.send("POST", "/v1/refunds", Some(PRODUCER), Some(bad)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let fields: Vec<&str> = body["fields"].as_array().unwrap().iter().map(|f| f["field"].as_str().unwrap()).collect();
    for f in ["colour", "syssn", "out_trade_no", "txamt"] {
        assert!(fields.contains(&f), "{f} not named in {body}");
    }
    let (status, body) = api.send("POST", "/v1/refunds", Some(PRODUCER), Some(refund("RF-2", 20_000))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "more than paid");
    assert_eq!(body["fields"][0]["field"], "txamt");

    let (status, body) = api.send("GET", "/v1/refunds/RF-1", Some(READER), None).await;
    assert_eq!((status, body["refund"]["txamt"].clone()), (StatusCode::OK, json!(500)));
    let (status, body) = api.send("GET", "/v1/refunds/NOPE", Some(READER), None).await;
    assert_eq!((status, body["error"].clone()), (StatusCode::NOT_FOUND, json!("not_found")));
    assert_eq!(api.ledger.counts().await.unwrap()[0], (State::Queued, 1), "one refund, whatever was sent");
}

#[tokio::test]
async fn tokens_roles_probes_and_limits() {
    let mut redis = RedisServer::start().unwrap();
    let api = Api::start(&redis.url(), "api-auth").await;
    let resp = api.http.get(format!("{}/v1/refunds/RF-1", api.url)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(resp.headers()["www-authenticate"], "Bearer");
    let (status, _) = api.send("GET", "/v1/refunds/RF-1", Some("not-a-token-at-all-xx"), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = api.send("POST", "/v1/refunds", Some(READER), Some(refund("RF-1", 1))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _) = api.send("POST", "/v1/refunds/RF-1/cancel", Some(PRODUCER), Some(json!({"reason": "x"}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "producers do not operate");

    let big = json!({"syssn": "1", "out_trade_no": "RF-big", "txamt": 1, "udid": "x".repeat(20_000)});
    let (status, _) = api.send("POST", "/v1/refunds", Some(PRODUCER), Some(big)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);

    assert_eq!(api.send("GET", "/healthz", None, None).await.0, StatusCode::OK);
    assert_eq!(api.send("GET", "/readyz", None, None).await.0, StatusCode::OK);
    redis.kill();
    let (status, _) = api.send("GET", "/readyz", None, None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(api.send("GET", "/healthz", None, None).await.0, StatusCode::OK, "alive without Redis");
    let (status, body) = api.send("POST", "/v1/refunds", Some(PRODUCER), Some(refund("RF-9", 1))).await;
    assert!(matches!(status, StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT), "{status} {body}");
    assert!(!body["message"].as_str().unwrap().contains("nothing was lost"), "{body}");
    assert!(body["message"].as_str().unwrap().contains("same out_trade_no"), "{body}");
}

#[tokio::test]
async fn listing_pages_through_a_state_once_and_by_payment() {
    let redis = TestRedis::start().unwrap();
    let api = Api::start(&redis.url(), "api-list").await;
    // Enqueued the old way: a fresh refund is listed under its payment from its first claim (see
    // the ledger's tests/fresh.rs), and no worker runs here.
    api.ledger.set_compact_queue(false).await.unwrap();
    for i in 0..25 {
        let syssn = if i < 3 { "1111" } else { "2222" };
        api.ledger.enqueue(NewRefund::new(syssn, &format!("RF-{i:02}"), 1)).await.unwrap();
    }
    let mut seen = Vec::new();
    let mut path = "/v1/refunds?state=queued&limit=10".to_owned();
    loop {
        let (status, body) = api.send("GET", &path, Some(READER), None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        seen.extend(body["items"].as_array().unwrap().iter().map(|r| r["out_trade_no"].as_str().unwrap().to_owned()));
        match body["next_cursor"].as_str() {
            Some(c) => path = format!("/v1/refunds?state=queued&limit=10&cursor={c}"),
            None => break,
        }
    }
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!((seen.len(), sorted.len()), (25, 25), "every refund once: {seen:?}");

    let (_, body) = api.send("GET", "/v1/refunds?syssn=1111", Some(READER), None).await;
    let ids: Vec<&str> =
        body["items"].as_array().unwrap().iter().map(|r| r["out_trade_no"].as_str().unwrap()).collect();
    assert_eq!(ids, ["RF-00", "RF-01", "RF-02"]);
    // Filters: a payment and an amount, newest first; every refund when none is given.
    let (_, body) =
        api.send("GET", "/v1/refunds?state=queued&syssn=1111&order=newest&limit=2", Some(READER), None).await;
    let ids: Vec<&str> =
        body["items"].as_array().unwrap().iter().map(|r| r["out_trade_no"].as_str().unwrap()).collect();
    assert_eq!(ids, ["RF-02", "RF-01"], "{body}");
    let (_, body) = api.send("GET", "/v1/refunds?merchant=default&min_txamt=2", Some(READER), None).await;
    assert_eq!(body["items"].as_array().map(Vec::len), Some(0), "{body}");
    let (status, body) = api.send("GET", "/v1/refunds?limit=1000", Some(READER), None).await;
    assert_eq!((status, body["items"].as_array().map(Vec::len)), (StatusCode::OK, Some(25)), "{body}");
    // The same search as CSV: a header, a row a refund.
    let (status, body) = api.send("GET", "/v1/refunds.csv?syssn=1111&order=newest", Some(READER), None).await;
    assert_eq!(status, StatusCode::OK);
    let csv = body.as_str().unwrap();
    let lines: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 4, "{csv}");
    assert!(lines[0].starts_with("merchant,out_trade_no,state,syssn,txamt,txamt_formatted"), "{csv}");
    let row: Vec<&str> = lines[1].split(',').collect();
    assert_eq!((row[0], row[1], row[2], row[3], row[4], row[5]), ("default", "RF-02", "queued", "1111", "1", "0.01"));
    assert!(row[10].ends_with('Z') && row[10].contains('T'), "RFC 3339: {}", row[10]);
    let (status, _) = api.send("GET", "/v1/refunds.csv?order=sideways", Some(READER), None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = api.send("GET", "/v1/refunds.csv", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    for bad in [
        "/v1/refunds?order=sideways",
        "/v1/refunds?min_txamt=5&max_txamt=4",
        "/v1/refunds?created_from=10&created_to=9",
        "/v1/refunds?created_from=-1",
        "/v1/refunds?respcd=00%2000",
        "/v1/refunds?merchant=",
        "/v1/refunds?state=lost",
        "/v1/refunds?state=queued&cursor=zz",
        "/v1/refunds?state=queued&limit=0",
    ] {
        let (status, body) = api.send("GET", bad, Some(READER), None).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
    }
}

/// Claims RF as a worker would and records `state` for it.
async fn put_in(l: &Ledger, otn: &str, state: State, next_at: Option<i64>) {
    let p = Policy { lease: Duration::from_secs(5), ..Policy::default() };
    let rec = l.get("default", otn).await.unwrap().unwrap();
    let o = ClaimOptions::new("w", &p, "2025-11-25 10:00:00");
    let fence = match l.claim(&(&rec).into(), &o).await.unwrap() {
        ledger::Claim::Submit { fence, .. } => fence,
        other => panic!("{other:?}"),
    };
    let rec = l.get("default", otn).await.unwrap().unwrap();
    let d = ledger::Decision { state, next_at, reason: "test".into(), pause_merchant: false, set: vec![] };
    assert!(l.transition(&rec, State::Submitting, fence, &d, "op").await.unwrap());
}

#[tokio::test]
async fn operator_actions_need_a_reason_and_are_audited_with_the_token_name() {
    let redis = TestRedis::start().unwrap();
    let api = Api::start(&redis.url(), "api-ops").await;
    for otn in ["RF-Q", "RF-R"] {
        api.ledger.enqueue(NewRefund::new(&format!("9{}", otn.len()), otn, 1)).await.unwrap();
    }
    put_in(&api.ledger, "RF-R", State::NeedsReview, None).await;

    let (status, body) =
        api.send("POST", "/v1/refunds/RF-Q/cancel", Some(OPERATOR), Some(json!({"reason": " "}))).await;
    assert_eq!((status, body["fields"][0]["field"].clone()), (StatusCode::UNPROCESSABLE_ENTITY, json!("reason")));
    let (status, body) = api.send("POST", "/v1/refunds/RF-Q/cancel", Some(OPERATOR), Some(json!({}))).await;
    assert_eq!((status, body["fields"][0]["field"].clone()), (StatusCode::UNPROCESSABLE_ENTITY, json!("reason")));
    let (status, body) =
        api.send("POST", "/v1/refunds/RF-Q/cancel", Some(OPERATOR), Some(json!({"reason": "order restored"}))).await;
    assert_eq!((status, body["refund"]["state"].clone()), (StatusCode::OK, json!("cancelled")), "{body}");
    let (status, body) =
        api.send("POST", "/v1/refunds/RF-Q/cancel", Some(OPERATOR), Some(json!({"reason": "again"}))).await;
    assert_eq!((status, body["error"].clone()), (StatusCode::CONFLICT, json!("refused")));

    let (status, _) = api
        .send("POST", "/v1/refunds/RF-R/resolve", Some(OPERATOR), Some(json!({"state": "cancelled", "reason": "x"})))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "only succeeded or failed");
    let (status, body) = api
        .send(
            "POST",
            "/v1/refunds/RF-R/resolve",
            Some(OPERATOR),
            Some(json!({"state": "failed", "reason": "QFPay support: never applied"})),
        )
        .await;
    assert_eq!((status, body["refund"]["state"].clone()), (StatusCode::OK, json!("failed")), "{body}");
    assert_eq!(body["refund"]["operator"], "ann");
    let (status, _) = api.send("POST", "/v1/refunds/NOPE/retry", Some(OPERATOR), Some(json!({"reason": "x"}))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let audit = api.ledger.audit("0", 100).await.unwrap();
    let trail: Vec<(&str, &str, &str, &str)> = audit
        .iter()
        .map(|a| (a.out_trade_no.as_str(), a.action.as_str(), a.who.as_str(), a.outcome.as_str()))
        .collect();
    assert_eq!(trail[0], ("RF-Q", "cancel", "ann", "ok"));
    assert!(trail[1].3.starts_with("refused"), "refusals are audited too: {trail:?}");
    assert_eq!(trail[2], ("RF-R", "resolve", "ann", "ok"));
    assert_eq!(audit[2].why, "QFPay support: never applied");
}

/// A success past the paid amount is refused unless forced (`force: true`, on QFPay's proof), and
/// the forced resolve is audited as such; a refund never sent is refused even when forced.
#[tokio::test]
async fn resolve_with_force_accepts_a_success_past_the_paid_amount_and_audits_it_as_forced() {
    let redis = TestRedis::start().unwrap();
    let api = Api::start(&redis.url(), "api-force").await;
    for otn in ["RF-F1", "RF-F2", "RF-F3"] {
        api.ledger.enqueue(NewRefund::new("PAY-F", otn, 600)).await.unwrap();
    }
    api.ledger.enqueue(NewRefund::new("PAY-G", "RF-F4", 600)).await.unwrap();
    put_in(&api.ledger, "RF-F1", State::Succeeded, None).await;
    put_in(&api.ledger, "RF-F2", State::NeedsReview, None).await;
    let rec = api.ledger.get("default", "RF-F2").await.unwrap().unwrap();
    api.ledger.set_paid(&(&rec).into(), 1_000).await.unwrap();
    let resolve = |otn: &str, force: Option<bool>| {
        let mut body = json!({"state": "succeeded", "reason": "QFPay ticket 42"});
        if let Some(f) = force {
            body["force"] = json!(f);
        }
        (format!("/v1/refunds/{otn}/resolve"), body)
    };
    // A success needs a second operator (four-eyes): asked by ann, approved by bob, carried out
    // then; past the paid amount the ledger refuses it unless forced.
    let ask = |otn: &str, force: Option<bool>| {
        let (path, body) = resolve(otn, force);
        let api = &api;
        async move {
            let (status, answer) = api.send("POST", &path, Some(OPERATOR), Some(body)).await;
            assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
            assert_eq!(answer["approval"]["status"], "pending", "{answer}");
            answer["approval"]["id"].as_str().unwrap().to_owned()
        }
    };
    let approve = |id: String, token: &'static str| {
        let api = &api;
        async move {
            api.send(
                "POST",
                &format!("/v1/approvals/{id}/approve"),
                Some(token),
                Some(json!({"reason": "seen the ticket"})),
            )
            .await
        }
    };
    for force in [None, Some(false)] {
        let id = ask("RF-F2", force).await;
        let (status, answer) = approve(id.clone(), OPERATOR).await;
        assert_eq!(status, StatusCode::CONFLICT, "not by its requester: {answer}");
        let (status, answer) = approve(id.clone(), OPERATOR2).await;
        assert_eq!((status, answer["status"].as_str()), (StatusCode::OK, Some("done")), "{answer}");
        assert!(answer["result"].to_string().contains("1200 of 1000"), "{answer}");
        let (status, _) = approve(id, OPERATOR2).await;
        assert_eq!(status, StatusCode::CONFLICT, "once");
    }
    assert_eq!(api.ledger.get("default", "RF-F2").await.unwrap().unwrap().state, State::NeedsReview);
    let id = ask("RF-F2", Some(true)).await;
    let (status, answer) = approve(id, OPERATOR2).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["result"]["items"][0]["outcome"]["to"], "succeeded", "{answer}");
    assert_eq!(api.ledger.get("default", "RF-F2").await.unwrap().unwrap().state, State::Succeeded);
    // A rejected request does nothing; the list shows every request.
    put_in(&api.ledger, "RF-F4", State::NeedsReview, None).await;
    let id = ask("RF-F4", None).await;
    let path = format!("/v1/approvals/{id}/reject");
    let (status, answer) = api.send("POST", &path, Some(OPERATOR2), Some(json!({"reason": "no proof"}))).await;
    assert_eq!((status, answer["status"].as_str()), (StatusCode::OK, Some("rejected")), "{answer}");
    assert_eq!(approve(id, OPERATOR2).await.0, StatusCode::CONFLICT);
    assert_eq!(api.ledger.get("default", "RF-F4").await.unwrap().unwrap().state, State::NeedsReview);
    // A refund that changed after the request was made is not acted on.
    let id = ask("RF-F4", None).await;
    let (status, _) =
        api.send("POST", "/v1/refunds/RF-F4/retry", Some(OPERATOR), Some(json!({"reason": "look again"}))).await;
    assert_eq!(status, StatusCode::OK);
    let (status, answer) = approve(id, OPERATOR2).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(answer["result"].to_string().contains("changed since it was asked for"), "{answer}");
    assert_ne!(api.ledger.get("default", "RF-F4").await.unwrap().unwrap().state, State::Succeeded);
    let (_, list) = api.send("GET", "/v1/approvals", Some(READER), None).await;
    assert_eq!(list["approvals"].as_array().map(Vec::len), Some(5), "{list}");
    assert_eq!(
        api.send("POST", "/v1/approvals/A1/approve", Some(READER), Some(json!({"reason": "x"}))).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        api.send("POST", "/v1/approvals/A99/approve", Some(OPERATOR2), Some(json!({"reason": "x"}))).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api.send("POST", "/v1/approvals/zz/approve", Some(OPERATOR2), Some(json!({"reason": "x"}))).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );

    // Never sent (reviewed from queued): refused at the door, forced or not.
    let rec = api.ledger.get("default", "RF-F3").await.unwrap().unwrap();
    api.ledger.defer(&rec, 0, "waited too long", Duration::ZERO).await.unwrap();
    let (path, body) = resolve("RF-F3", Some(true));
    let (status, answer) = api.send("POST", &path, Some(OPERATOR), Some(body)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert!(answer.to_string().contains("never sent"), "{answer}");

    let audit = api.ledger.audit("0", 100).await.unwrap();
    let forced: Vec<_> = audit.iter().filter(|a| a.action == "resolve --force").collect();
    assert!(
        forced.iter().any(|a| a.out_trade_no == "RF-F2" && a.who == "bob (approving ann)" && a.outcome == "ok"),
        "both names in the audit: {audit:?}"
    );
}

#[tokio::test]
async fn a_signed_notification_brings_the_enquiry_forward_and_nothing_else() {
    let redis = TestRedis::start().unwrap();
    let api = Api::start(&redis.url(), "api-notify").await;
    api.ledger.enqueue(NewRefund::new("77", "RF-N", 1)).await.unwrap();
    let later = api.ledger.now_ms() + 600_000;
    put_in(&api.ledger, "RF-N", State::Pending, Some(later)).await;
    let body = br#"{"notify_type": "refund", "out_trade_no": "RF-N", "syssn": "R1", "respcd": "0000"}"#;
    let sign = |b: &[u8]| qfpay::sign::notification_signature(b, &ClientKey::new(NOTIFY_KEY.to_owned()), SignAlg::Md5);
    let post = |b: &'static [u8], sig: Option<String>| {
        let mut req = api.http.post(format!("{}/v1/qfpay/notify", api.url)).body(b.to_vec());
        if let Some(s) = sig {
            req = req.header("X-QF-SIGN", s);
        }
        req.send()
    };
    let resp = post(body, Some("0".repeat(32))).await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(post(body, None).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        api.ledger.get("default", "RF-N").await.unwrap().unwrap().next_at,
        later,
        "a bad signature changes nothing"
    );

    let resp = post(body, Some(sign(body).to_lowercase())).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.text().await.unwrap(), "SUCCESS");
    let rec = api.ledger.get("default", "RF-N").await.unwrap().unwrap();
    assert_eq!(rec.state, State::Pending, "the enquiry, not the notification, settles it");
    assert!(rec.next_at <= api.ledger.now_ms(), "due now");

    let payment: &[u8] = br#"{"notify_type": "payment", "out_trade_no": "O-1"}"#;
    let resp = post(payment, Some(sign(payment))).await.unwrap();
    assert_eq!((resp.status(), resp.text().await.unwrap()), (StatusCode::OK, "SUCCESS".to_owned()));
    let (_, metrics) = api.send("GET", "/metrics", None, None).await;
    let metrics = metrics.as_str().unwrap().to_owned();
    assert!(metrics.contains("qfrefund_api_notifications_total{outcome=\"expedited\"} 1"), "{metrics}");
    assert!(metrics.contains("qfrefund_api_notifications_total{outcome=\"bad_signature\"} 2"), "{metrics}");
    assert!(metrics.contains("qfrefund_refunds{state=\"pending\"} 1"), "{metrics}");
    assert!(metrics.contains("route=\"/v1/qfpay/notify\""), "{metrics}");
    assert!(!metrics.contains("RF-N"), "no refund ids in labels");
}

/// The committed document is what the code generates, and every operation in it is routed.
#[tokio::test]
async fn the_openapi_document_matches_the_routes_and_the_committed_copy() {
    let redis = TestRedis::start().unwrap();
    let api = Api::start(&redis.url(), "api-openapi").await;
    let (status, served) = api.send("GET", "/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let generated = serde_json::to_value(qfrefund_api::openapi()).unwrap();
    assert_eq!(served, generated);
    let committed_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
    let pretty = serde_json::to_string_pretty(&generated).unwrap() + "\n";
    if std::env::var("UPDATE_OPENAPI").is_ok() {
        std::fs::write(committed_path, &pretty).unwrap();
    }
    let committed = std::fs::read_to_string(committed_path).unwrap_or_default();
    assert!(
        committed == pretty,
        "docs/openapi.json is stale: run `UPDATE_OPENAPI=1 cargo test -p qfrefund-api --test http`"
    );

    let paths = generated["paths"].as_object().unwrap();
    for p in [
        "/v1/refunds",
        "/v1/refunds/{out_trade_no}",
        "/v1/refunds/{out_trade_no}/retry",
        "/v1/refunds/{out_trade_no}/cancel",
        "/v1/refunds/{out_trade_no}/resolve",
        "/v1/refunds/{out_trade_no}/enquire",
        "/v1/merchants/{merchant}/refunds/{out_trade_no}/enquire",
        "/v1/merchants/{merchant}/refunds/{out_trade_no}/events",
        "/v1/merchants/{merchant}/refunds/{out_trade_no}/attempts",
        "/v1/merchants/{merchant}/pause",
        "/v1/merchants/{merchant}/resume",
        "/v1/stats",
        "/v1/audit",
        "/v1/workers",
        "/v1/webhooks/failed",
        "/v1/webhooks/redeliver",
        "/v1/qfpay/notify",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(paths.contains_key(p), "{p} missing from the document");
    }
    for (path, ops) in paths {
        let concrete = path.replace("{out_trade_no}", "RF-X");
        for method in ops.as_object().unwrap().keys() {
            let (status, _) = api.send(&method.to_uppercase(), &concrete, Some(OPERATOR), Some(json!({}))).await;
            assert!(
                status != StatusCode::NOT_FOUND || path.contains("{out_trade_no}"),
                "{method} {path} is documented but not routed"
            );
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path} is documented but not routed");
        }
    }
}
