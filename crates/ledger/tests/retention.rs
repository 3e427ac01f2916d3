//! Retention: a final refund past the retention leaves Redis, and its tombstone still answers
//! for it — the same request as a duplicate with its outcome, another as a conflict, and its
//! payment's refunded total against an over-refund.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{answer, claimed, ledger, ledger_with, policy};
use qfrefund_ledger::machine::after_submit;
use qfrefund_ledger::refund::tombstone::{day_of, day36};
use qfrefund_ledger::store::retention::{TombstoneForm, bucket_hash, tomb_field};
use qfrefund_ledger::{Claim, ClaimOptions, Enqueued, Ledger, LedgerError, NewRefund, State};
use redis::AsyncCommands;
use testkit::raw_connection;

/// Enqueues, submits and books `otn` as succeeded (QFPay answering 0000).
async fn succeed(l: &Ledger, refund: NewRefund) {
    common::submit_and_book(l, refund, &answer("0000")).await
}

fn paid(otn: &str, amt: u64) -> NewRefund {
    NewRefund { orig_txamt: Some(1000), ..NewRefund::new("123", otn, amt) }
}

/// Archives (here: only reads) and removes every final refund, as a worker's round would.
async fn retain_all(l: &Ledger) -> Vec<qfrefund_ledger::store::retention::Retained> {
    let mut all = Vec::new();
    for shard in 0..l.shard_count() {
        let batch = l.retained(shard, Duration::ZERO, 100).await.unwrap();
        assert!(l.take_archiver(shard, "test", Duration::from_secs(10)).await.unwrap());
        let removed = l.remove_archived("test", &batch).await.unwrap();
        assert_eq!(removed.removed as usize, batch.len(), "{removed:?}");
        all.extend(batch);
    }
    all
}

/// The ledger's layout key (each test has a Redis of its own).
async fn layout_key(raw: &mut redis::aio::MultiplexedConnection) -> String {
    let keys: Vec<String> = raw.keys("*:layout").await.unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    keys[0].clone()
}

/// The bucket (at level 0) of a tombstone of `name` (kind `x` a refund, `xp` a payment).
async fn bucket(
    raw: &mut redis::aio::MultiplexedConnection,
    keys: &qfrefund_ledger::store::keys::Keys,
    kind: &str,
    name: &str,
) -> String {
    let base: Option<u64> = raw.hget(keys.tombs(), "base").await.unwrap();
    format!("{}:{kind}:0:{}", keys.prefix(), bucket_hash(name) % base.unwrap_or(1024))
}

/// Sets the ledger's tombstone form, as a ledger made by an older version has it.
async fn set_tombstone_form(redis: &testkit::TestRedis, form: u8) {
    let mut raw = raw_connection(&redis.url()).await;
    let layout = layout_key(&mut raw).await;
    let _: () = raw.hset(layout, qfrefund_ledger::store::retention::TOMBSTONES_FIELD, form).await.unwrap();
}

#[tokio::test]
async fn a_removed_refund_is_answered_by_its_compact_tombstone_and_its_payment_still_counts() {
    removed_refund_answered_by_its_tombstone(TombstoneForm::Compact).await
}

#[tokio::test]
async fn a_removed_refund_is_answered_by_its_text_tombstone_and_its_payment_still_counts() {
    removed_refund_answered_by_its_tombstone(TombstoneForm::Text).await
}

async fn removed_refund_answered_by_its_tombstone(form: TombstoneForm) {
    let (redis, l) = ledger("retain").await;
    if form == TombstoneForm::Text {
        set_tombstone_form(&redis, 1).await;
    }
    assert_eq!(l.tombstone_form().await.unwrap(), form);
    succeed(&l, paid("RF1", 600)).await;
    let shard = l.shard_of("default");
    assert_eq!(l.retention_backlog(shard, Duration::ZERO).await.unwrap(), 1);
    assert!(l.retained(shard, Duration::from_secs(3600), 100).await.unwrap().is_empty(), "not old enough");

    let archived = retain_all(&l).await;
    assert_eq!(archived.len(), 1);
    let a = &archived[0];
    assert_eq!((a.out_trade_no.as_str(), a.merchant.as_str(), a.state), ("RF1", "default", State::Succeeded));
    assert_eq!(a.fields.get("txamt").map(String::as_str), Some("600"));
    let states: Vec<&str> = a.timeline.iter().map(|e| e.state.as_str()).collect();
    assert_eq!(states, ["queued", "submitting", "succeeded"]);
    assert_eq!(a.timeline[2].respcd.as_deref(), Some("0000"));

    // Nothing of it is left in Redis but tombstones.
    let keys = l.shard_keys(shard);
    let mut raw = raw_connection(&redis.url()).await;
    for key in [keys.record("RF1"), keys.timeline("RF1"), keys.payment("123")] {
        assert!(!raw.exists::<_, bool>(&key).await.unwrap(), "{key}");
    }
    for s in [State::Succeeded, State::Queued] {
        assert_eq!(raw.zcard::<_, u64>(keys.state(s)).await.unwrap(), 0);
    }
    assert_eq!(raw.zcard::<_, u64>(keys.created()).await.unwrap(), 0);
    assert_eq!(l.get("default", "RF1").await.unwrap(), None);
    let t = l.tombstone("default", "RF1").await.unwrap().unwrap();
    assert_eq!((t.state, t.respcd.as_deref(), t.archived), (State::Succeeded, Some("0000"), true));
    assert_eq!(l.payment_tombstone("default", "123").await.unwrap(), Some((Some(1000), 600)));
    assert_eq!(l.tombstone_count(shard).await.unwrap(), 2, "the refund's and the payment's");
    // Stored in the form the layout says: text under the name, or compact under its digest.
    let (bx, bp) = (bucket(&mut raw, keys, "x", "RF1").await, bucket(&mut raw, keys, "xp", "123").await);
    let text: Option<String> = raw.hget(&bx, "RF1").await.unwrap();
    let compact: Option<Vec<u8>> = raw.hget(&bx, tomb_field("RF1")).await.unwrap();
    let pay: Option<Vec<u8>> = raw.hget(&bp, tomb_field("123")).await.unwrap();
    match form {
        TombstoneForm::Compact => {
            assert!(text.is_none());
            let v = compact.expect("the Lua and Rust digests agree");
            assert_eq!((v[0], v.len()), (1, 14), "tag, hash, day, state, respcd: {v:?}");
            assert_eq!(raw.hget::<_, _, u64>(keys.tombs(), "base").await.unwrap(), 256);
            assert_eq!(&pay.unwrap()[3..], b"1000 600");
        }
        _ => {
            assert!(compact.is_none() && pay.is_none());
            assert!(text.unwrap().ends_with(" s 0000"));
        }
    }

    // The same request: a duplicate, with its outcome; another: a conflict.
    match l.enqueue(paid("RF1", 600)).await.unwrap() {
        Enqueued::Duplicate(r) => {
            assert_eq!((r.state, r.respcd.as_deref(), r.archived, r.txamt), (State::Succeeded, Some("0000"), true, 600))
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(l.enqueue(paid("RF1", 700)).await, Err(LedgerError::Conflict { .. })));
    assert_eq!(l.get("default", "RF1").await.unwrap(), None, "neither wrote a record");
    let batch = l.enqueue_batch(vec![paid("RF1", 600), paid("RF1", 5)]).await;
    assert!(matches!(batch[0], Ok(qfrefund_ledger::Accepted::Duplicate)), "{batch:?}");
    assert!(matches!(batch[1], Err(LedgerError::Conflict { .. })), "{batch:?}");

    // The payment's archived 600 still counts: 600 more would refund 1 200 of 1 000.
    let p = policy(5_000);
    l.enqueue(paid("RF2", 600)).await.unwrap();
    let r2 = l.get("default", "RF2").await.unwrap().unwrap();
    match l.claim(&(&r2).into(), &ClaimOptions::new("w", &p, "t")).await.unwrap() {
        Claim::Failed(why) => assert!(why.contains("600 already refunded"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(l.payment_tombstone("default", "123").await.unwrap(), None, "the payment is live again");
    // And 400 fits exactly; a second archiving round keeps the payment's total (600 + 400).
    succeed(&l, paid("RF3", 400)).await;
    assert_eq!(retain_all(&l).await.len(), 2);
    assert_eq!(l.payment_tombstone("default", "123").await.unwrap(), Some((Some(1000), 1000)));
    assert!(matches!(l.enqueue(paid("RF4", 1000)).await, Err(LedgerError::PaidMismatch { .. }) | Ok(_)));
}

#[tokio::test]
async fn only_final_refunds_unchanged_since_they_were_read_are_removed() {
    let (redis, l) = ledger("retain-changed").await;
    l.enqueue(NewRefund::new("9", "RF-LIVE", 1)).await.unwrap();
    succeed(&l, paid("RF1", 10)).await;
    let shard = l.shard_of("default");
    let batch = l.retained(shard, Duration::ZERO, 100).await.unwrap();
    let ids: Vec<&str> = batch.iter().map(|r| r.out_trade_no.as_str()).collect();
    assert_eq!(ids, ["RF1"], "a queued refund is never retained");
    // Changed after it was read (as an operator's retry would): kept.
    let mut raw = raw_connection(&redis.url()).await;
    let _: () = raw.hset(l.shard_keys(shard).record("RF1"), "updated_at", 1).await.unwrap();
    assert!(l.take_archiver(shard, "test", Duration::from_secs(10)).await.unwrap());
    let r = l.remove_archived("test", &batch).await.unwrap();
    assert_eq!((r.removed, r.changed), (0, 1));
    assert!(l.get("default", "RF1").await.unwrap().is_some());
    // A leftover index entry without a record is cleared, not retained for ever.
    let _: () = raw.zadd(l.shard_keys(shard).state(State::Failed), "GHOST", 0).await.unwrap();
    let batch = l.retained(shard, Duration::ZERO, 100).await.unwrap();
    assert!(batch.iter().all(|r| r.out_trade_no != "GHOST"));
    assert_eq!(raw.zscore::<_, _, Option<f64>>(l.shard_keys(shard).state(State::Failed), "GHOST").await.unwrap(), None);
}

/// A compact tombstone (see `tomb.lua`) as if written on `day`.
fn redated(v: &[u8], day: i64) -> Vec<u8> {
    let at = if v[0] == 1 { 7 } else { 1 };
    let mut v = v.to_vec();
    v[at..at + 2].copy_from_slice(&(day as u16).to_be_bytes());
    v
}

#[tokio::test]
async fn compact_tombstones_past_their_own_retention_are_swept_and_free_the_out_trade_no() {
    tombstones_past_their_retention_are_swept(TombstoneForm::Compact).await
}

#[tokio::test]
async fn text_tombstones_past_their_own_retention_are_swept_and_free_the_out_trade_no() {
    tombstones_past_their_retention_are_swept(TombstoneForm::Text).await
}

async fn tombstones_past_their_retention_are_swept(form: TombstoneForm) {
    let (redis, l) = ledger("retain-sweep").await;
    if form == TombstoneForm::Text {
        set_tombstone_form(&redis, 1).await;
    }
    succeed(&l, paid("RF1", 10)).await;
    succeed(&l, NewRefund { orig_txamt: Some(50), ..NewRefund::new("456", "RF2", 10) }).await;
    retain_all(&l).await;
    let shard = l.shard_of("default");
    // RF1's tombstone (and its payment's) as if written 500 days ago; RF2's stays recent.
    let keys = l.shard_keys(shard);
    let mut raw = raw_connection(&redis.url()).await;
    let old = day_of(l.now_ms()) - 500;
    let (bx, bp) = (bucket(&mut raw, keys, "x", "RF1").await, bucket(&mut raw, keys, "xp", "123").await);
    if form == TombstoneForm::Text {
        let v: String = raw.hget(&bx, "RF1").await.expect("the Lua and Rust bucket hashes agree");
        let mut w: Vec<&str> = v.split(' ').collect();
        let old36 = day36(old);
        w[1] = &old36;
        let _: () = raw.hset(&bx, "RF1", w.join(" ")).await.unwrap();
        let _: () = raw.hset(&bp, "123", format!("1000 10 {old36}")).await.unwrap();
    } else {
        for (b, name) in [(&bx, "RF1"), (&bp, "123")] {
            let v: Vec<u8> = raw.hget(b, tomb_field(name)).await.unwrap();
            let _: () = raw.hset(b, tomb_field(name), redated(&v, old)).await.unwrap();
        }
        let back = l.tombstone("default", "RF1").await.unwrap().unwrap();
        assert_eq!(back.archived_on, qfrefund_ledger::refund::tombstone::date_of_day(old), "the day reads back");
    }
    let keep = Duration::from_secs(400 * 86_400);
    let mut removed = 0;
    loop {
        let (n, round_done) = l.sweep_tombstones(shard, keep).await.unwrap();
        removed += n;
        if round_done {
            break;
        }
    }
    assert_eq!(removed, 2);
    assert_eq!(l.tombstone("default", "RF1").await.unwrap(), None);
    assert!(l.tombstone("default", "RF2").await.unwrap().is_some());
    assert_eq!(l.tombstone_count(shard).await.unwrap(), 2, "RF2's and its payment's");
    // RF1 is forgotten: the same out_trade_no is a new refund now.
    assert!(matches!(l.enqueue(paid("RF1", 10)).await.unwrap(), Enqueued::Created(_)));
}

/// A ledger upgraded from text to compact tombstones keeps answering from both.
#[tokio::test]
async fn text_tombstones_still_answer_once_the_ledger_writes_compact_ones() {
    let (redis, l) = ledger("retain-forms").await;
    set_tombstone_form(&redis, 1).await;
    succeed(&l, paid("RF1", 300)).await;
    retain_all(&l).await;
    assert_eq!(l.enable_retention(false).await.unwrap(), TombstoneForm::Text);
    assert_eq!(l.tombstone_form().await.unwrap(), TombstoneForm::Text, "compact only when asked");
    assert_eq!(l.enable_retention(true).await.unwrap(), TombstoneForm::Text);
    assert_eq!(l.tombstone_form().await.unwrap(), TombstoneForm::Compact);
    succeed(&l, NewRefund { orig_txamt: Some(50), ..NewRefund::new("456", "RF2", 10) }).await;
    retain_all(&l).await;
    for (otn, amt) in [("RF1", 300), ("RF2", 10)] {
        let syssn = if otn == "RF1" { "123" } else { "456" };
        let again =
            NewRefund { orig_txamt: Some(if otn == "RF1" { 1000 } else { 50 }), ..NewRefund::new(syssn, otn, amt) };
        assert!(matches!(l.enqueue(again).await.unwrap(), Enqueued::Duplicate(r) if r.archived), "{otn}");
    }
    // The text payment tombstone restores the payment: 300 of 1 000 already refunded.
    succeed(&l, paid("RF3", 700)).await;
    l.enqueue(paid("RF4", 1)).await.unwrap();
    let p = policy(5_000);
    let r4 = l.get("default", "RF4").await.unwrap().unwrap();
    assert!(matches!(l.claim(&(&r4).into(), &ClaimOptions::new("w", &p, "t")).await.unwrap(), Claim::Failed(_)));
}

fn of(merchant: &str, syssn: &str, otn: &str, txamt: u64) -> NewRefund {
    NewRefund { merchant: Some(merchant.into()), ..NewRefund::new(syssn, otn, txamt) }
}

/// Found in review: another merchant's refund kept under its bare out_trade_no (a ledger from
/// before refunds were merchant-scoped) left a tombstone its merchant's enqueues did not see,
/// so another request under the same (merchant, out_trade_no) became a second refund.
#[tokio::test]
async fn a_bare_id_refund_of_another_merchant_archived_still_conflicts_with_another_request() {
    let (redis, l) = ledger_with("retain-legacy", 1).await;
    l.enqueue(of("shop2", "300", "RF9", 30)).await.unwrap();
    // Kept under the bare id, as before scoping.
    common::move_to_bare_id(&redis.url(), &l, "shop2", "300", "RF9").await;
    assert!(matches!(l.enqueue(of("shop2", "300", "RF9", 31)).await, Err(LedgerError::Conflict { .. })));
    let p = policy(5_000);
    let fetched = l.claim_due(0, 10, &ClaimOptions::new("w1", &p, "2026-12-02 10:00:00")).await.unwrap();
    let (fence, rec) = claimed(fetched.claims.into_iter().next().unwrap().claim);
    let d = after_submit(&rec, &answer("0000"), &p, l.now_ms(), 0.5);
    assert!(l.transition(&rec, State::Submitting, fence, &d, "op-1").await.unwrap());
    assert_eq!(retain_all(&l).await.len(), 1);
    assert!(matches!(l.enqueue(of("shop2", "300", "RF9", 30)).await.unwrap(), Enqueued::Duplicate(_)));
    let r = l.enqueue(of("shop2", "300", "RF9", 31)).await;
    assert!(matches!(r, Err(LedgerError::Conflict { .. })), "a second refund for (shop2, RF9): {r:?}");
    assert_eq!(l.tombstone("shop2", "RF9").await.unwrap().unwrap().state, State::Succeeded);
}

/// Found in review: a final-state index entry whose record is live was archived (a live refund
/// in the archive) and read again by every round, for ever.
#[tokio::test]
async fn a_live_refund_under_a_final_index_is_never_archived_and_the_entry_is_cleared() {
    let (redis, l) = ledger_with("retain-live", 1).await;
    l.enqueue(NewRefund::new("9", "RF-LIVE", 1)).await.unwrap();
    let k = l.shard_keys(0);
    let mut raw = raw_connection(&redis.url()).await;
    let _: () = raw.zadd(k.state(State::Failed), "RF-LIVE", 0).await.unwrap();
    assert!(l.retained(0, Duration::ZERO, 100).await.unwrap().is_empty());
    assert_eq!(raw.zscore::<_, _, Option<f64>>(k.state(State::Failed), "RF-LIVE").await.unwrap(), None);
    assert!(raw.zscore::<_, _, Option<f64>>(k.state(State::Queued), "RF-LIVE").await.unwrap().is_some());
    assert_eq!(l.get("default", "RF-LIVE").await.unwrap().unwrap().state, State::Queued);
}

/// Found in review: a worker whose archiving lease ran out (a stall) while it wrote must remove
/// nothing: another worker holds the shard now.
#[tokio::test]
async fn a_worker_that_lost_the_shard_removes_nothing() {
    let (_r, l) = ledger_with("retain-lost", 1).await;
    succeed(&l, paid("RF1", 10)).await;
    assert!(l.take_archiver(0, "a", Duration::from_millis(50)).await.unwrap());
    let batch = l.retained(0, Duration::ZERO, 100).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(l.take_archiver(0, "b", Duration::from_secs(10)).await.unwrap(), "a's lease ran out");
    assert!(!l.take_archiver(0, "a", Duration::from_secs(10)).await.unwrap());
    let r = l.remove_archived("a", &batch).await.unwrap();
    assert!(r.lost && r.removed == 0, "{r:?}");
    assert!(l.get("default", "RF1").await.unwrap().is_some());
    assert_eq!(l.remove_archived("b", &batch).await.unwrap().removed, 1);
}

/// Found in review: a tombstone whose day does not read was swept at once, freeing its
/// out_trade_no. It is kept.
#[tokio::test]
async fn a_tombstone_whose_day_does_not_read_is_kept() {
    let (redis, l) = ledger_with("retain-odd", 1).await;
    succeed(&l, paid("RF1", 10)).await;
    retain_all(&l).await;
    let mut raw = raw_connection(&redis.url()).await;
    let key = bucket(&mut raw, l.shard_keys(0), "x", "RF1").await;
    let _: () = raw.hset(&key, tomb_field("RF1"), b"\x01\x00".as_slice()).await.unwrap();
    loop {
        if l.sweep_tombstones(0, Duration::ZERO).await.unwrap().1 {
            break;
        }
    }
    assert!(raw.hexists::<_, _, bool>(&key, tomb_field("RF1")).await.unwrap());
    // And it still refuses a request under its out_trade_no (saying it cannot read it).
    let r = l.enqueue(paid("RF1", 10)).await;
    assert!(matches!(&r, Err(LedgerError::Script(why)) if why.contains("tombstone")), "{r:?}");
    assert_eq!(l.get("default", "RF1").await.unwrap(), None);
}

/// Found in review: processes from before tombstones would take an archived refund's request
/// again for a new refund. A ledger made by this version allows retention; an older one only
/// once an operator says so.
#[tokio::test]
async fn retention_of_an_older_ledger_waits_until_it_is_enabled() {
    let (redis, l) = ledger_with("retain-gate", 1).await;
    assert!(l.retention_enabled().await.unwrap(), "a new ledger allows it");
    let mut raw = raw_connection(&redis.url()).await;
    let layout = format!("{}:layout", l.shard_keys(0).prefix());
    let _: () = raw.hdel(&layout, qfrefund_ledger::store::retention::TOMBSTONES_FIELD).await.unwrap();
    assert!(!l.retention_enabled().await.unwrap());
    assert_eq!(l.enable_retention(false).await.unwrap(), TombstoneForm::Disabled);
    assert!(l.retention_enabled().await.unwrap());
    assert_eq!(l.tombstone_form().await.unwrap(), TombstoneForm::Text, "what the first version with tombstones reads");
    assert_eq!(l.enable_retention(true).await.unwrap(), TombstoneForm::Text);
    assert_eq!(l.enable_retention(false).await.unwrap(), TombstoneForm::Compact);
    assert_eq!(l.tombstone_form().await.unwrap(), TombstoneForm::Compact, "never back from compact");
}
