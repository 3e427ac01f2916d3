//! Summaries: a succeeded refund archived early leaves its tombstones and a summary in Redis,
//! which answers reads and listings for it until the retention; duplicates, conflicts and its
//! payment's refunded total are answered as for any archived refund.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{ledger, policy};
use qfrefund_ledger::{Claim, ClaimOptions, Enqueued, Ledger, LedgerError, NewRefund, State};
use redis::AsyncCommands;
use testkit::raw_connection;

fn paid(otn: &str, amt: u64) -> NewRefund {
    NewRefund {
        orig_txamt: Some(1000),
        mchid: Some("M-77".into()),
        udid: Some("U-9".into()),
        ..NewRefund::new("123", otn, amt)
    }
}

/// QFPay's success, every field it may carry filled in.
fn success() -> qfrefund_ledger::SubmitResult {
    qfrefund_ledger::SubmitResult::Answer(qfpay::RefundResponse {
        respcd: Some("0000".into()),
        resperr: Some("交易成功 / ok".into()),
        syssn: Some("R-20261202-1".into()),
        sysdtm: Some("2026-12-02 10:11:12".into()),
        ..Default::default()
    })
}

/// Enqueues, submits and books `refund` as succeeded (QFPay answering 0000).
async fn succeed(l: &Ledger, refund: NewRefund) {
    common::submit_and_book(l, refund, &success()).await
}

#[tokio::test]
async fn a_succeeded_refund_archived_early_is_answered_by_its_summary_then_its_tombstone() {
    let (redis, l) = ledger("summary").await;
    let shard = l.shard_of("default");
    succeed(&l, paid("RF1", 600)).await;
    l.enqueue(NewRefund::new("456", "RF9", 5)).await.unwrap();
    let whole = l.get("default", "RF1").await.unwrap().unwrap();
    assert!(l.summarising(shard, Duration::from_secs(3600), 100).await.unwrap().is_empty(), "not old enough");

    let month = Duration::from_secs(30 * 86_400);
    assert_eq!(l.summary_backlog(shard, Duration::ZERO, month).await.unwrap(), 1);
    let batch = l.summarising(shard, Duration::ZERO, 100).await.unwrap();
    assert_eq!(batch.iter().map(|r| r.out_trade_no.as_str()).collect::<Vec<_>>(), ["RF1"], "only succeeded ones");
    assert_eq!(batch[0].timeline.len(), 3, "read whole for the archive");
    assert!(l.take_archiver(shard, "test", Duration::from_secs(10)).await.unwrap());
    assert_eq!(l.summarise_archived("test", &batch).await.unwrap().removed, 1);

    // The record, its timeline, evidence, payment and index entries are gone; a summary stays.
    let keys = l.shard_keys(shard);
    let mut raw = raw_connection(&redis.url()).await;
    for key in [keys.record("RF1"), keys.timeline("RF1"), keys.evidence("RF1"), keys.payment("123")] {
        assert!(!raw.exists::<_, bool>(&key).await.unwrap(), "{key}");
    }
    assert_eq!(raw.zcard::<_, u64>(keys.state(State::Succeeded)).await.unwrap(), 0);
    assert!(raw.zscore::<_, _, Option<f64>>(keys.created(), "RF1").await.unwrap().is_none());
    let summary: String = raw.get(keys.summary("RF1")).await.unwrap();
    assert!(summary.len() < 170, "{} bytes: {summary}", summary.len());
    assert_eq!(l.get("default", "RF1").await.unwrap(), None, "no live record");

    // Every field a summary keeps reads back as the record had it.
    let s = l.summary("default", "RF1").await.unwrap().unwrap();
    assert!(s.archived);
    let pick = |r: &qfrefund_ledger::Record| {
        (
            (r.out_trade_no.clone(), r.syssn.clone(), r.txamt, r.orig_txamt, r.mchid.clone(), r.udid.clone()),
            (r.merchant.clone(), r.state, r.submits, r.enquiries, r.created_at, r.updated_at, r.submitted_at),
            (r.respcd.clone(), r.resperr.clone(), r.refund_syssn.clone(), r.sysdtm.clone(), r.operator.clone()),
        )
    };
    assert_eq!(pick(&s), pick(&whole));
    assert_eq!(s.reason, None, "a worker's reason is in the archived timeline; an operator's stays");
    assert_eq!((s.mchid.as_deref(), s.udid.as_deref(), s.orig_txamt), (Some("M-77"), Some("U-9"), Some(1000)));
    assert_eq!((s.respcd.as_deref(), s.refund_syssn.as_deref()), (Some("0000"), Some("R-20261202-1")));
    assert_eq!((s.resperr.as_deref(), s.sysdtm.as_deref()), (Some("交易成功 / ok"), Some("2026-12-02 10:11:12")));
    assert!(s.submitted_at.is_some() && s.submits == 1 && s.created_at > 0 && s.updated_at >= s.created_at);
    assert_eq!(l.summary("other", "RF1").await.unwrap(), None, "another merchant's refund");

    // Listings and counts still see it as succeeded.
    let counts = l.counts().await.unwrap();
    assert!(counts.contains(&(State::Succeeded, 1)), "{counts:?}");
    let stats = l.stats().await.unwrap();
    assert!(stats.by_state.contains(&(State::Succeeded, 1)), "{:?}", stats.by_state);
    let listed = l.list(State::Succeeded, 0, 10).await.unwrap();
    assert_eq!(listed.iter().map(|r| (r.out_trade_no.as_str(), r.archived)).collect::<Vec<_>>(), [("RF1", true)]);
    let (page, _) = l.page(State::Succeeded, None, 10).await.unwrap();
    assert_eq!(page.len(), 1);
    let created = l.created_between(0, i64::MAX, 0, 10).await.unwrap();
    let created: Vec<(&str, bool)> = created.iter().map(|r| (r.out_trade_no.as_str(), r.archived)).collect();
    assert_eq!(created, [("RF1", true), ("RF9", false)], "reconciliation still finds it by when it was created");

    // The same request: a duplicate with its outcome; another: a conflict; the payment counts.
    match l.enqueue(paid("RF1", 600)).await.unwrap() {
        Enqueued::Duplicate(r) => {
            assert_eq!((r.state, r.respcd.as_deref(), r.archived), (State::Succeeded, Some("0000"), true))
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(l.enqueue(paid("RF1", 700)).await, Err(LedgerError::Conflict { .. })));
    l.enqueue(paid("RF2", 600)).await.unwrap();
    let r2 = l.get("default", "RF2").await.unwrap().unwrap();
    match l.claim(&(&r2).into(), &ClaimOptions::new("w", &policy(5_000), "t")).await.unwrap() {
        Claim::Failed(why) => assert!(why.contains("600 already refunded"), "{why}"),
        other => panic!("{other:?}"),
    }

    // At the retention the summary goes; the tombstone still answers.
    assert_eq!(l.expire_summaries(shard, Duration::from_secs(3600), 100).await.unwrap(), 0, "not yet");
    assert_eq!(l.retention_backlog(shard, Duration::ZERO).await.unwrap(), 1, "RF2 (failed), whole");
    assert_eq!(l.summary_backlog(shard, Duration::ZERO, month).await.unwrap(), 1, "RF1 is archived; RF2 waits");
    assert_eq!(l.expire_summaries(shard, Duration::ZERO, 100).await.unwrap(), 1);
    assert!(!raw.exists::<_, bool>(keys.summary("RF1")).await.unwrap());
    assert_eq!(l.summary_count(shard).await.unwrap(), 0);
    assert_eq!(l.summary("default", "RF1").await.unwrap(), None);
    assert!(matches!(l.enqueue(paid("RF1", 600)).await.unwrap(), Enqueued::Duplicate(_)));
}

#[tokio::test]
async fn a_summary_is_not_written_over_a_refund_changed_since_it_was_read() {
    let (_redis, l) = ledger("summary-changed").await;
    let shard = l.shard_of("default");
    succeed(&l, paid("RF1", 600)).await;
    let mut batch = l.summarising(shard, Duration::ZERO, 100).await.unwrap();
    batch[0].fields.insert("updated_at".into(), "1".into());
    assert!(l.take_archiver(shard, "test", Duration::from_secs(10)).await.unwrap());
    let r = l.summarise_archived("test", &batch).await.unwrap();
    assert_eq!((r.removed, r.changed), (0, 1));
    assert!(l.get("default", "RF1").await.unwrap().is_some());
    assert_eq!(l.summary_count(shard).await.unwrap(), 0);
    // Evidence kept since it was read (a request fenced off meanwhile) is not in the archive yet:
    // kept too.
    let batch = l.summarising(shard, Duration::ZERO, 100).await.unwrap();
    let rec = l.get("default", "RF1").await.unwrap().unwrap();
    let late = qfpay::Evidence {
        call: "query".into(),
        sent_at: 1,
        took_ms: 1,
        params: Default::default(),
        sign_sha256: "ab".repeat(32),
        sign_type: "MD5".into(),
        http_status: Some(200),
        body: Some("{}".into()),
        body_truncated: false,
        error: None,
        fenced_off: false,
    };
    assert!(l.keep_fenced_off_evidence(&rec, &late).await.unwrap());
    let r = l.summarise_archived("test", &batch).await.unwrap();
    assert_eq!((r.removed, r.changed), (0, 1));
    let again = l.summarising(shard, Duration::ZERO, 100).await.unwrap();
    assert_eq!(again[0].attempts.len(), batch[0].attempts.len() + 1, "read again, with it");
    // Another worker's archiving: nothing.
    let batch = l.summarising(shard, Duration::ZERO, 100).await.unwrap();
    assert!(l.summarise_archived("intruder", &batch).await.unwrap().lost);
    assert_eq!(l.summary_count(shard).await.unwrap(), 0);
}

#[tokio::test]
async fn a_ledger_made_by_an_older_version_archives_early_only_once_told() {
    let (redis, l) = ledger("summary-gate").await;
    assert!(l.summaries_enabled().await.unwrap(), "a new ledger does from the start");
    let mut raw = raw_connection(&redis.url()).await;
    let layouts: Vec<String> = raw.keys("*:layout").await.unwrap();
    let _: () = raw.hdel(&layouts[0], qfrefund_ledger::store::summary::SUMMARIES_FIELD).await.unwrap();
    assert!(!l.summaries_enabled().await.unwrap());
    assert!(l.enable_summaries().await.unwrap().is_empty(), "it was not before");
    assert!(l.summaries_enabled().await.unwrap());
    assert_eq!(l.summarised_states().await.unwrap(), [State::Succeeded, State::Failed, State::Cancelled]);
}

#[tokio::test]
async fn failed_and_cancelled_refunds_are_archived_early_too_keeping_their_reasons() {
    let (redis, l) = ledger("summary-final").await;
    let shard = l.shard_of("default");
    // RF1 succeeds (600 of 1 000); RF2 (600 more) fails at its claim, never sent; RF3 is cancelled.
    succeed(&l, paid("RF1", 600)).await;
    l.enqueue(paid("RF2", 600)).await.unwrap();
    let r2 = l.get("default", "RF2").await.unwrap().unwrap();
    assert!(matches!(
        l.claim(&(&r2).into(), &ClaimOptions::new("w", &policy(5_000), "t")).await.unwrap(),
        Claim::Failed(_)
    ));
    l.enqueue(NewRefund::new("456", "RF3", 5)).await.unwrap();
    let cancelled =
        l.operate("default", "RF3", qfrefund_ledger::Operation::Cancel, "ann", "kept the goods").await.unwrap();
    assert_eq!(cancelled, Ok(State::Cancelled));
    let before = [l.get("default", "RF2").await.unwrap().unwrap(), l.get("default", "RF3").await.unwrap().unwrap()];

    // A ledger without `final_summaries` (made by the version before it) leaves the other two
    // whole, and its script refuses them even when asked.
    let mut raw = raw_connection(&redis.url()).await;
    let layouts: Vec<String> = raw.keys("*:layout").await.unwrap();
    let _: () = raw.hdel(&layouts[0], qfrefund_ledger::store::summary::FINAL_SUMMARIES_FIELD).await.unwrap();
    assert_eq!(l.summarised_states().await.unwrap(), [State::Succeeded]);
    let only = l.summarising(shard, Duration::ZERO, 100).await.unwrap();
    assert_eq!(only.iter().map(|r| r.out_trade_no.as_str()).collect::<Vec<_>>(), ["RF1"]);
    let all = l.retained(shard, Duration::ZERO, 100).await.unwrap();
    let failed: Vec<_> = all.into_iter().filter(|r| r.out_trade_no != "RF1").collect();
    assert_eq!(failed.len(), 2);
    assert!(l.take_archiver(shard, "test", Duration::from_secs(10)).await.unwrap());
    let refused = l.summarise_archived("test", &failed).await.unwrap();
    assert_eq!((refused.removed, refused.changed), (0, 2), "{refused:?}");
    assert_eq!(l.enable_summaries().await.unwrap(), [State::Succeeded]);

    let batch = l.summarising(shard, Duration::ZERO, 100).await.unwrap();
    assert_eq!(batch.len(), 3);
    assert_eq!(l.summarise_archived("test", &batch).await.unwrap().removed, 3);
    let keys = l.shard_keys(shard).clone();
    // A succeeded refund's summary keeps the form the version before reads.
    let raw_summary: String = raw.get(keys.summary("RF1")).await.unwrap();
    assert!(raw_summary.starts_with("[2,"), "{raw_summary}");
    let raw_summary: String = raw.get(keys.summary("RF2")).await.unwrap();
    assert!(raw_summary.starts_with("[3,") && raw_summary.ends_with(",\"f\"]"), "{raw_summary}");
    for (otn, state) in [("RF2", State::Failed), ("RF3", State::Cancelled)] {
        assert!(!raw.exists::<_, bool>(keys.record(otn)).await.unwrap(), "{otn}");
        let at: Option<f64> = raw.zscore(keys.summaries_in(state), otn).await.unwrap();
        assert!(at.is_some(), "{otn} in its state's summaries index");
    }
    // Read back as they were: state, reason, answer; listed and counted in their states.
    for was in &before {
        assert!(l.get("default", &was.out_trade_no).await.unwrap().is_none(), "no record left");
        let now = l.summary("default", &was.out_trade_no).await.unwrap().unwrap();
        assert!(now.archived);
        assert_eq!(
            (now.state, &now.operator, &now.respcd, now.txamt, now.created_at),
            (was.state, &was.operator, &was.respcd, was.txamt, was.created_at),
            "{}",
            was.out_trade_no
        );
        // The reason as the record kept it (its first 64 bytes; the archive has the whole text).
        let kept = now.reason.as_deref().unwrap().trim_end_matches('…');
        assert!(!kept.is_empty() && was.reason.as_deref().unwrap().starts_with(kept), "{now:?}");
    }
    let counts = l.counts().await.unwrap();
    for state in [State::Succeeded, State::Failed, State::Cancelled] {
        assert_eq!(counts.iter().find(|(s, _)| *s == state).unwrap().1, 1, "{state}");
        let (page, _) = l.page(state, None, 10).await.unwrap();
        assert_eq!(page.len(), 1, "{state}");
    }
    assert_eq!(l.stats().await.unwrap().by_state.iter().find(|(s, _)| *s == State::Failed).unwrap().1, 1);
    assert_eq!(l.created_between(0, i64::MAX, 0, 10).await.unwrap().len(), 3);
    let found = l.search(&qfrefund_ledger::store::search::Search::default(), None, 10).await.unwrap();
    assert_eq!(found.items.len(), 3);
    // The same request again is a duplicate with its outcome; at the retention the summaries go.
    match l.enqueue(NewRefund::new("456", "RF3", 5)).await.unwrap() {
        Enqueued::Duplicate(r) => {
            assert_eq!((r.state, r.archived), (State::Cancelled, true))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(l.summary_count(shard).await.unwrap(), 3);
    // A batch's limit counts across the three indexes.
    assert_eq!(l.expire_summaries(shard, Duration::ZERO, 2).await.unwrap(), 2);
    assert_eq!(l.summary_count(shard).await.unwrap(), 1);
    assert_eq!(l.expire_summaries(shard, Duration::ZERO, 100).await.unwrap(), 1);
    assert_eq!(l.summary_count(shard).await.unwrap(), 0);
}

#[tokio::test]
async fn a_retry_of_a_summarised_refund_is_never_refused_for_its_merchant() {
    // A producer retrying a refund settled long ago, for a merchant no configuration or live
    // worker names any more, must get the refund back (the enqueue script answers it), not a 422.
    let (_redis, l) = ledger("summary-merchant").await;
    let shard = l.shard_of("default");
    succeed(&l, paid("RF1", 600)).await;
    let batch = l.summarising(shard, Duration::ZERO, 100).await.unwrap();
    assert!(l.take_archiver(shard, "test", Duration::from_secs(10)).await.unwrap());
    assert_eq!(l.summarise_archived("test", &batch).await.unwrap().removed, 1);
    assert_eq!(l.get("default", "RF1").await.unwrap(), None, "no live record");

    let configured: Vec<String> = vec!["another".into()];
    assert!(l.check_merchant("default", &configured).await.unwrap().is_err(), "default is unknown here");
    assert_eq!(l.check_refund_merchant(&paid("RF1", 600), &configured).await.unwrap(), Ok(()));
    // A new refund of that merchant is still refused.
    assert!(l.check_refund_merchant(&paid("RF2", 100), &configured).await.unwrap().is_err());
}
