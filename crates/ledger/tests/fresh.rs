//! Fresh refunds (`store::fresh`): a queued refund holds only its record, its queued-index entry,
//! its outcome-stream entry and its id on the ready list; it is given its created-index entry,
//! its timeline and its place under its payment when it first leaves `queued` — and the money
//! rules hold as for any other refund: the paid amount checked, the payment's earlier refunds
//! counted even when they were archived meanwhile.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{answer, claimed, ledger, policy};
use qfrefund_ledger::machine::after_submit;
use qfrefund_ledger::store::search::Search;
use qfrefund_ledger::{Claim, ClaimOptions, Ledger, NewRefund, Operation, Policy, State};
use redis::AsyncCommands;
use testkit::raw_connection;

fn paid(otn: &str, amt: u64) -> NewRefund {
    NewRefund { orig_txamt: Some(1000), ..NewRefund::new("123", otn, amt) }
}

/// Every refund `claim_due` hands out in one call of the default merchant's shard.
async fn fetch(l: &Ledger, p: &Policy) -> Vec<(String, Claim)> {
    let o = ClaimOptions::new("w", p, "2026-12-02 10:00:00");
    let got = l.claim_due(l.shard_of("default"), 50, &o).await.unwrap();
    got.claims.into_iter().map(|c| (c.target.out_trade_no.clone(), c.claim)).collect()
}

/// Books QFPay's success for a refund just claimed for a submit.
async fn book(l: &Ledger, claim: Claim, p: &Policy) {
    let (fence, rec) = claimed(claim);
    let d = after_submit(&rec, &answer("0000"), p, 0, 0.5);
    assert!(l.transition(&rec, State::Submitting, fence, &d, "op").await.unwrap());
}

#[tokio::test]
async fn a_fresh_refund_holds_only_its_record_queued_entry_event_and_ready_id() {
    let (redis, l) = ledger("fresh-keys").await;
    assert!(l.compact_queue(), "a new ledger enqueues fresh");
    let req = paid("RF1", 100);
    l.enqueue(req.clone()).await.unwrap();
    let k = l.keys_for("default").clone();
    let mut raw = raw_connection(&redis.url()).await;
    let h: std::collections::HashMap<String, String> = raw.hgetall(k.record("RF1")).await.unwrap();
    assert_eq!(h.get("fresh").map(String::as_str), Some("2"), "its payment was unknown: {h:?}");
    assert!(!h.contains_key("updated_at") && !h.contains_key("next_at"), "{h:?}");
    assert_eq!(h["payload_hash"], req.payload_hash()[..32]);
    assert_eq!(raw.lrange::<_, Vec<String>>(k.ready(), 0, -1).await.unwrap(), ["RF1"]);
    assert!(raw.zscore::<_, _, Option<f64>>(k.state(State::Queued), "RF1").await.unwrap().is_some());
    for index in [k.due(), k.created()] {
        assert!(raw.zscore::<_, _, Option<f64>>(&index, "RF1").await.unwrap().is_none(), "{index}");
    }
    assert!(!raw.exists::<_, bool>(k.payment("123")).await.unwrap(), "no payment hash yet");
    assert!(!raw.exists::<_, bool>(k.timeline("RF1")).await.unwrap(), "no timeline yet");
    assert_eq!(l.events("0", 10).await.unwrap().len(), 1, "its creation is announced");

    // Read back, it is what an old-form queued refund reads as.
    let rec = l.get("default", "RF1").await.unwrap().unwrap();
    assert!(rec.fresh && rec.same_payload(&req.payload_hash()));
    assert_eq!((rec.updated_at, rec.next_at), (rec.created_at, rec.created_at));
    let t = l.timeline("default", "RF1").await.unwrap().unwrap();
    assert_eq!((t.len(), t[0].state.as_str(), t[0].at), (1, "queued", rec.created_at));
    assert_eq!(l.due_len().await.unwrap(), 1);
    assert_eq!(l.stats().await.unwrap().due_now, 1);
    // The same request again is a duplicate, another a conflict (the record keeps half the hash).
    assert!(matches!(l.enqueue(req.clone()).await.unwrap(), qfrefund_ledger::Enqueued::Duplicate(_)));
    assert!(l.enqueue(NewRefund { txamt: 200, ..req.clone() }).await.is_err());
    let created = l.created_between(0, i64::MAX, 0, 10).await.unwrap();
    assert_eq!(created.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["RF1"], "found by creation");
    let found = l.search(&Search::default(), None, 10).await.unwrap();
    assert_eq!(found.items.len(), 1);

    // Its claim settles it: created index, payment, timeline; the ready list lets it go.
    let p = policy(5_000);
    let mut got = fetch(&l, &p).await;
    assert_eq!(got.len(), 1);
    let (_, claim) = got.remove(0);
    assert!(matches!(claim, Claim::Submit { .. }), "{claim:?}");
    assert_eq!(raw.llen::<_, u64>(k.ready()).await.unwrap(), 0);
    let at: Option<f64> = raw.zscore(k.created(), "RF1").await.unwrap();
    assert_eq!(at.map(|a| a as i64), Some(rec.created_at));
    let pay: std::collections::HashMap<String, String> = raw.hgetall(k.payment("123")).await.unwrap();
    assert_eq!(pay.get("paid").map(String::as_str), Some("1000"), "{pay:?}");
    assert!(pay.contains_key("r:RF1"), "{pay:?}");
    assert!(!raw.hexists::<_, _, bool>(k.record("RF1"), "fresh").await.unwrap());
    book(&l, claim, &p).await;
    let t = l.timeline("default", "RF1").await.unwrap().unwrap();
    let states: Vec<&str> = t.iter().map(|e| e.state.as_str()).collect();
    assert_eq!(states, ["queued", "submitting", "succeeded"]);
    assert_eq!(t[0].at, rec.created_at);
    assert_eq!(l.by_payment("123").await.unwrap().len(), 1);
    let created = l.created_between(0, i64::MAX, 0, 10).await.unwrap();
    assert_eq!(created.len(), 1, "once, from the created index");
}

#[tokio::test]
async fn a_paid_amount_that_disagrees_is_refused_at_the_door_or_at_the_claim_never_sent() {
    let (_r, l) = ledger("fresh-paid").await;
    let p = policy(5_000);
    // Both enqueued before the payment is known: the second is accepted, and fails at its claim.
    l.enqueue(paid("RF1", 100)).await.unwrap();
    l.enqueue(NewRefund { orig_txamt: Some(999), ..NewRefund::new("123", "RF2", 1) }).await.unwrap();
    let got = fetch(&l, &p).await;
    let outcome = |otn: &str| got.iter().find(|(o, _)| o == otn).map(|(_, c)| c.clone()).unwrap();
    assert!(matches!(outcome("RF1"), Claim::Submit { .. }));
    match outcome("RF2") {
        Claim::Failed(why) => {
            assert!(why.contains("999 disagrees with the 1000") && why.contains("never sent"), "{why}")
        }
        other => panic!("{other:?}"),
    }
    let rf2 = l.get("default", "RF2").await.unwrap().unwrap();
    assert_eq!((rf2.state, rf2.submits), (State::Failed, 0));
    assert_eq!(l.by_payment("123").await.unwrap().len(), 2, "both listed under their payment");
    // Once the payment is known, at the door, and nothing is written.
    let late = NewRefund { orig_txamt: Some(999), ..NewRefund::new("123", "RF3", 1) };
    assert!(matches!(l.enqueue(late).await, Err(qfrefund_ledger::LedgerError::PaidMismatch { .. })));
    assert!(l.get("default", "RF3").await.unwrap().is_none());
}

#[tokio::test]
async fn a_payment_archived_while_a_fresh_refund_waits_still_counts_at_its_claim() {
    let (_r, l) = ledger("fresh-archived").await;
    let p = policy(5_000);
    // Two refunds of 900 of one payment of 1 000, both fresh (the payment unknown at each).
    l.enqueue(paid("RF1", 900)).await.unwrap();
    l.enqueue(paid("RF2", 900)).await.unwrap();
    let rf1 = l.get("default", "RF1").await.unwrap().unwrap();
    let claim = l.claim(&(&rf1).into(), &ClaimOptions::new("w", &p, "t")).await.unwrap();
    book(&l, claim, &p).await;
    // RF1 is archived and removed; RF2, not yet under the payment, does not keep it: the payment
    // leaves its tombstone.
    let shard = l.shard_of("default");
    let batch = l.retained(shard, Duration::ZERO, 100).await.unwrap();
    assert_eq!(batch.len(), 1);
    assert!(l.take_archiver(shard, "test", Duration::from_secs(10)).await.unwrap());
    assert_eq!(l.remove_archived("test", &batch).await.unwrap().removed, 1);
    assert_eq!(l.payment_tombstone("default", "123").await.unwrap(), Some((Some(1000), 900)));
    // RF2's claim restores the payment from it: 900 + 900 would refund 1 800 of 1 000.
    match fetch(&l, &p).await.as_slice() {
        [(otn, Claim::Failed(why))] => {
            assert_eq!(otn, "RF2");
            assert!(why.contains("900 already refunded"), "{why}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(l.payment_tombstone("default", "123").await.unwrap(), None, "the payment is live again");
}

#[tokio::test]
async fn a_fresh_refund_cancelled_or_queued_again_is_listed_once() {
    let (redis, l) = ledger("fresh-cancel").await;
    let mut raw = raw_connection(&redis.url()).await;
    let k = l.keys_for("default").clone();
    l.enqueue(paid("RF1", 100)).await.unwrap();
    l.enqueue(paid("RF2", 100)).await.unwrap();
    // Cancelled while fresh: settled (created index, payment, timeline) as it leaves 'queued'.
    let done = l.operate("default", "RF1", Operation::Cancel, "ops", "customer kept the goods").await.unwrap();
    assert_eq!(done, Ok(State::Cancelled));
    assert_eq!(raw.lrange::<_, Vec<String>>(k.ready(), 0, -1).await.unwrap(), ["RF2"], "it left the ready list");
    assert!(raw.zscore::<_, _, Option<f64>>(k.created(), "RF1").await.unwrap().is_some());
    let t = l.timeline("default", "RF1").await.unwrap().unwrap();
    assert_eq!(t.iter().map(|e| e.state.as_str()).collect::<Vec<_>>(), ["queued", "cancelled"]);
    assert_eq!(l.by_payment("123").await.unwrap().len(), 1, "under its payment (RF2 is still fresh)");
    // RF2 waits past its maximum age for a paused merchant, is reviewed, and an operator queues it
    // again: in the queued index by then, in the created index by its creation.
    l.pause("default", "test", "test").await.unwrap();
    let p = Policy { max_age: Duration::from_millis(1), ..policy(5_000) };
    tokio::time::sleep(Duration::from_millis(5)).await;
    let got = fetch(&l, &p).await;
    assert!(got.iter().any(|(o, c)| o == "RF2" && matches!(c, Claim::Blocked(_))), "{got:?}");
    assert_eq!(raw.llen::<_, u64>(k.ready()).await.unwrap(), 0);
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(
        l.operate("default", "RF2", Operation::Retry, "ops", "paused by mistake").await.unwrap(),
        Ok(State::Queued)
    );
    let created = l.created_between(0, i64::MAX, 0, 10).await.unwrap();
    assert_eq!(created.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["RF1", "RF2"]);
    let found = l.search(&Search::default(), None, 10).await.unwrap();
    assert_eq!(found.items.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["RF1", "RF2"]);
    let newest = l.search(&Search { newest_first: true, ..Search::default() }, None, 10).await.unwrap();
    assert_eq!(newest.items.len(), 2);
}

#[tokio::test]
async fn a_ledger_without_the_layout_field_enqueues_the_old_way() {
    let (redis, l) = ledger("fresh-off").await;
    let mut raw = raw_connection(&redis.url()).await;
    let layouts: Vec<String> = raw.keys("*:layout").await.unwrap();
    for layout in &layouts {
        let _: () = raw.hdel(layout, qfrefund_ledger::store::fresh::COMPACT_QUEUE_FIELD).await.unwrap();
    }
    assert!(!l.compact_queue_enabled().await.unwrap() && !l.compact_queue());
    l.enqueue(paid("RF1", 100)).await.unwrap();
    let k = l.keys_for("default").clone();
    assert!(raw.zscore::<_, _, Option<f64>>(k.due(), "RF1").await.unwrap().is_some());
    assert!(raw.zscore::<_, _, Option<f64>>(k.created(), "RF1").await.unwrap().is_some());
    assert!(raw.exists::<_, bool>(k.payment("123")).await.unwrap());
    assert_eq!(raw.llen::<_, u64>(k.ready()).await.unwrap(), 0);
    assert!(!l.get("default", "RF1").await.unwrap().unwrap().fresh);
    // Switched on, the next enqueue is fresh; both forms are claimed.
    assert!(!l.set_compact_queue(true).await.unwrap());
    l.enqueue(NewRefund::new("456", "RF2", 100)).await.unwrap();
    assert!(l.get("default", "RF2").await.unwrap().unwrap().fresh);
    let got = fetch(&l, &policy(5_000)).await;
    assert_eq!(got.iter().filter(|(_, c)| matches!(c, Claim::Submit { .. })).count(), 2, "{got:?}");
}

#[tokio::test]
async fn a_payment_s_fresh_refunds_are_found_by_its_syssn_and_new_ones_are_not_kept_waiting() {
    let (_r, l) = ledger("fresh-syssn").await;
    l.enqueue(paid("RF1", 100)).await.unwrap();
    l.enqueue(paid("RF2", 100)).await.unwrap();
    // Neither is under its payment yet; a search by payment finds both all the same (what a bulk
    // cancel by payment acts on).
    assert!(l.by_payment("123").await.unwrap().is_empty());
    let q = Search { syssn: Some("123".into()), ..Search::default() };
    let found = l.search(&q, None, 10).await.unwrap();
    assert_eq!(found.items.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["RF1", "RF2"]);
    // A re-queued refund is listed once, newest first too (RF3: reviewed, then retried).
    l.enqueue(paid("RF3", 100)).await.unwrap();
    let p = Policy { max_age: Duration::ZERO, ..policy(5_000) };
    l.pause("default", "test", "test").await.unwrap();
    let rf3 = l.get("default", "RF3").await.unwrap().unwrap();
    assert!(matches!(l.claim(&(&rf3).into(), &ClaimOptions::new("w", &p, "t")).await.unwrap(), Claim::Blocked(_)));
    tokio::time::sleep(Duration::from_millis(3)).await;
    assert_eq!(l.operate("default", "RF3", Operation::Retry, "ops", "again").await.unwrap(), Ok(State::Queued));
    for newest_first in [false, true] {
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let page = l.search(&Search { newest_first, ..q.clone() }, cursor.as_ref(), 1).await.unwrap();
            seen.extend(page.items.into_iter().map(|r| r.id));
            match page.next {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        seen.sort();
        assert_eq!(seen, ["RF1", "RF2", "RF3"], "newest first: {newest_first}");
    }
    let created = l.created_between(0, i64::MAX, 0, 2).await.unwrap();
    assert_eq!(created.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["RF1", "RF2"]);
    let created = l.created_between(0, i64::MAX, 2, 2).await.unwrap();
    assert_eq!(created.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["RF3"]);
    // A settled refund still queued (deferred by the pause) reads as last changed at its creation.
    let rf1 = l.get("default", "RF1").await.unwrap().unwrap();
    assert!(matches!(
        l.claim(&(&rf1).into(), &ClaimOptions::new("w", &policy(5_000), "t")).await.unwrap(),
        Claim::Deferred { .. }
    ));
    let rf1 = l.get("default", "RF1").await.unwrap().unwrap();
    assert!(!rf1.fresh);
    assert_eq!((rf1.state, rf1.updated_at), (State::Queued, rf1.created_at));
}

#[tokio::test]
async fn the_ready_list_gets_half_of_each_batch_while_refunds_are_due_again() {
    let (_r, l) = ledger("fresh-fair").await;
    // Eight refunds the old way (in the due-index), then eight fresh ones.
    l.set_compact_queue(false).await.unwrap();
    for i in 0..8 {
        l.enqueue(NewRefund::new(&format!("{i}"), &format!("OLD{i}"), 1)).await.unwrap();
    }
    l.set_compact_queue(true).await.unwrap();
    for i in 0..8 {
        l.enqueue(NewRefund::new(&format!("1{i}"), &format!("NEW{i}"), 1)).await.unwrap();
    }
    let p = policy(5_000);
    let o = ClaimOptions::new("w", &p, "t");
    let got = l.claim_due(l.shard_of("default"), 4, &o).await.unwrap();
    let names: Vec<&str> = got.claims.iter().map(|c| c.target.out_trade_no.as_str()).collect();
    assert_eq!(names, ["OLD0", "OLD1", "NEW0", "NEW1"]);
    // With the ready list short of its half, the due-index fills the batch.
    let got = l.claim_due(l.shard_of("default"), 20, &o).await.unwrap();
    assert_eq!(got.claims.len(), 12);
    assert!(got.next_due.is_some());
}
