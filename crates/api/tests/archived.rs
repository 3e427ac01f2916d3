//! A refund archived and removed from Redis is still answered over HTTP, marked archived: from
//! the archive where the API can read it, else from its tombstone; the same request again is a
//! duplicate with its outcome, another under the same out_trade_no a 409.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use ledger::machine::after_submit;
use ledger::{ClaimOptions, LedgerConfig, Policy, State};
use reqwest::StatusCode;
use testkit::{TestRedis, unique_namespace};

/// Books RF-1 as succeeded (QFPay answering 0000, refund syssn R9), archives it into `setting`
/// and removes it from Redis as a worker's retention round does (`early`: leaving a summary).
async fn succeed_and_archive(l: &ledger::Ledger, setting: &str, early: bool) {
    let p = Policy { lease: Duration::from_secs(5), ..Policy::default() };
    let rec = l.get("default", "RF-1").await.unwrap().unwrap();
    let (fence, rec) = match l.claim(&(&rec).into(), &ClaimOptions::new("w", &p, "t")).await.unwrap() {
        ledger::Claim::Submit { fence, record, .. } => (fence, *record),
        other => panic!("{other:?}"),
    };
    let answer = qfpay::RefundResponse { respcd: Some("0000".into()), syssn: Some("R9".into()), ..Default::default() };
    let d = after_submit(&rec, &ledger::SubmitResult::Answer(answer), &p, 0, 0.5);
    assert!(l.transition(&rec, State::Submitting, fence, &d, "op").await.unwrap());
    let batch = if early {
        l.summarising(0, Duration::ZERO, 10).await.unwrap()
    } else {
        l.retained(0, Duration::ZERO, 10).await.unwrap()
    };
    let sink = archive::Sink::from_setting(setting).unwrap();
    let day = ledger::refund::tombstone::date_of_day(ledger::refund::tombstone::day_of(l.now_ms()));
    let lines = batch.iter().map(|r| archive::ArchivedRefund::of(r, l.now_ms())).collect();
    sink.write(0, &day, lines).await.unwrap();
    assert!(l.take_archiver(0, "test", Duration::from_secs(10)).await.unwrap());
    let removed =
        if early { l.summarise_archived("test", &batch).await } else { l.remove_archived("test", &batch).await };
    assert_eq!(removed.unwrap().removed, 1);
}

#[tokio::test]
async fn an_archived_refund_is_answered_from_the_archive_or_its_tombstone() {
    let redis = TestRedis::start().unwrap();
    let dir = std::env::temp_dir().join(format!("qfrefund-api-archive-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let setting = format!("file://{}", dir.display());
    let config = LedgerConfig { namespace: unique_namespace("api-archived"), ..LedgerConfig::default() };
    let api = Api::start_archived(&redis.url(), config.clone(), Some(setting.clone())).await;
    let bare = Api::start_with(&redis.url(), config).await;
    let (status, _) = api.send("POST", "/v1/refunds", Some(PRODUCER), Some(refund("RF-1", 500))).await;
    assert_eq!(status, StatusCode::ACCEPTED);

    // QFPay answers 0000; then a worker's retention round archives it and removes it.
    let l = &api.ledger;
    succeed_and_archive(l, &setting, false).await;

    let (status, body) = api.send("GET", "/v1/refunds/RF-1", Some(READER), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let r = &body["refund"];
    assert_eq!(
        (r["archived"].as_bool(), r["state"].as_str(), r["txamt"].as_u64()),
        (Some(true), Some("succeeded"), Some(500))
    );
    assert_eq!(r["refund_syssn"], "R9", "the whole record, from the archive");
    let (status, body) = api.send("GET", "/v1/merchants/default/refunds/RF-1", Some(READER), None).await;
    assert_eq!((status, body["refund"]["archived"].as_bool()), (StatusCode::OK, Some(true)));

    // Without the archive: what the tombstone keeps.
    let (status, body) = bare.send("GET", "/v1/refunds/RF-1", Some(READER), None).await;
    assert_eq!(status, StatusCode::OK);
    let r = &body["refund"];
    assert_eq!(
        (r["archived"].as_bool(), r["state"].as_str(), r["respcd"].as_str()),
        (Some(true), Some("succeeded"), Some("0000"))
    );

    // Its timeline from the archive; where the archive cannot be read, a 404 that says so.
    let (status, body) = api.send("GET", "/v1/merchants/default/refunds/RF-1/events", Some(READER), None).await;
    assert_eq!((status, body["archived"].as_bool()), (StatusCode::OK, Some(true)), "{body}");
    let states: Vec<&str> = body["events"].as_array().unwrap().iter().map(|e| e["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["queued", "submitting", "succeeded"]);
    let (status, body) = api.send("GET", "/v1/merchants/default/refunds/RF-1/attempts", Some(READER), None).await;
    assert_eq!((status, body["archived"].as_bool()), (StatusCode::OK, Some(true)), "{body}");
    let (status, body) = bare.send("GET", "/v1/merchants/default/refunds/RF-1/events", Some(READER), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["message"].as_str().unwrap().contains("archive"), "{body}");

    // The same request: the refund as it ended; another: a conflict, and nothing written.
    let (status, body) = api.send("POST", "/v1/refunds", Some(PRODUCER), Some(refund("RF-1", 500))).await;
    assert_eq!(
        (status, body["refund"]["state"].as_str(), body["refund"]["archived"].as_bool()),
        (StatusCode::OK, Some("succeeded"), Some(true))
    );
    let (status, body) = api.send("POST", "/v1/refunds", Some(PRODUCER), Some(refund("RF-1", 700))).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["differences"][0].as_str().unwrap().contains("archived"), "{body}");
    assert_eq!(l.get("default", "RF-1").await.unwrap(), None);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_refund_archived_early_is_answered_from_its_summary_and_listed() {
    let redis = TestRedis::start().unwrap();
    let dir = std::env::temp_dir().join(format!("qfrefund-api-summary-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let setting = format!("file://{}", dir.display());
    let config = LedgerConfig { namespace: unique_namespace("api-summary"), ..LedgerConfig::default() };
    let api = Api::start_archived(&redis.url(), config.clone(), Some(setting.clone())).await;
    let bare = Api::start_with(&redis.url(), config).await;
    let (status, _) = api.send("POST", "/v1/refunds", Some(PRODUCER), Some(refund("RF-1", 500))).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    succeed_and_archive(&api.ledger, &setting, true).await;
    assert_eq!(api.ledger.get("default", "RF-1").await.unwrap(), None);

    // Redis alone answers for it: the API without the archive reads its summary.
    let (status, body) = bare.send("GET", "/v1/refunds/RF-1", Some(READER), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let r = &body["refund"];
    assert_eq!(
        (r["archived"].as_bool(), r["state"].as_str(), r["txamt"].as_u64(), r["refund_syssn"].as_str()),
        (Some(true), Some("succeeded"), Some(500), Some("R9"))
    );
    let (status, body) = bare.send("GET", "/v1/refunds?state=succeeded", Some(READER), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["items"][0]["out_trade_no"], "RF-1", "{body}");
    // Its payment no longer lists it, but says what was refunded (archived refunds included).
    let (status, body) = bare.send("GET", "/v1/refunds?syssn=20251125000000000000000001", Some(READER), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["payment"]["refunded"].as_u64(), body["payment"]["paid"].as_u64()),
        (Some(500), Some(10_000)),
        "{body}"
    );
    // Its history is in the archive.
    let (status, body) = api.send("GET", "/v1/merchants/default/refunds/RF-1/events", Some(READER), None).await;
    assert_eq!((status, body["archived"].as_bool()), (StatusCode::OK, Some(true)), "{body}");
    assert_eq!(body["events"].as_array().map(Vec::len), Some(3), "{body}");
    let (status, _) = bare.send("GET", "/v1/merchants/default/refunds/RF-1/events", Some(READER), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The same request: the refund as it ended; another: a conflict.
    let (status, body) = api.send("POST", "/v1/refunds", Some(PRODUCER), Some(refund("RF-1", 500))).await;
    assert_eq!((status, body["refund"]["state"].as_str()), (StatusCode::OK, Some("succeeded")), "{body}");
    assert_eq!(body["refund"]["refund_syssn"], "R9", "the duplicate answers with its summary: {body}");
    let (status, _) = api.send("POST", "/v1/refunds", Some(PRODUCER), Some(refund("RF-1", 700))).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let _ = std::fs::remove_dir_all(&dir);
}
