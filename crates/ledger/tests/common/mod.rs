//! What the ledger's store tests share: a ledger on its own redis-server, a policy, claims.

#![allow(dead_code, clippy::unwrap_used)]

use std::time::Duration;

use qfpay::RefundResponse;
use qfrefund_ledger::machine::SubmitResult;
use qfrefund_ledger::{Claim, Ledger, LedgerConfig, Policy, Record};
use testkit::{TestRedis, unique_namespace};

/// A ledger of as many shards as the run asks for (`testkit::test_shards`).
pub async fn ledger(name: &str) -> (TestRedis, Ledger) {
    ledger_with(name, testkit::test_shards()).await
}

pub async fn ledger_with(name: &str, shards: usize) -> (TestRedis, Ledger) {
    let redis = TestRedis::start().unwrap();
    let config = LedgerConfig { namespace: unique_namespace(name), ..LedgerConfig::default().with_shards(shards) };
    let l = Ledger::connect(&redis.url(), config).await.unwrap();
    (redis, l)
}

pub fn policy(lease_ms: u64) -> Policy {
    Policy { lease: Duration::from_millis(lease_ms), syssn_busy_wait: Duration::from_millis(1), ..Policy::default() }
}

/// The fence and the record as claimed (the record a worker transitions).
pub fn claimed(c: Claim) -> (u64, Record) {
    match c {
        Claim::Submit { fence, record, .. } | Claim::Enquire { fence, record, .. } => (fence, *record),
        other => panic!("not claimed: {other:?}"),
    }
}

pub fn answer(code: &str) -> SubmitResult {
    SubmitResult::Answer(RefundResponse { respcd: Some(code.into()), syssn: Some("R1".into()), ..Default::default() })
}

/// Moves `merchant`'s queued refund `otn` (of payment `syssn`) to the layout of a ledger from
/// before refunds were merchant-scoped: its record, timeline and every index under the bare
/// out_trade_no.
pub async fn move_to_bare_id(redis_url: &str, l: &Ledger, merchant: &str, syssn: &str, otn: &str) {
    use redis::AsyncCommands;
    let k = l.keys_for(merchant).clone();
    let scoped = qfrefund_ledger::refund::placement::refund_id(merchant, otn);
    let mut raw = testkit::raw_connection(redis_url).await;
    let _: () = raw.rename(k.record(&scoped), k.record(otn)).await.unwrap();
    // (A fresh refund, see `store::fresh`, has no timeline yet, and is on the ready list instead
    // of the due and created indexes.)
    if raw.exists::<_, bool>(k.timeline(&scoped)).await.unwrap() {
        let _: () = raw.rename(k.timeline(&scoped), k.timeline(otn)).await.unwrap();
    }
    for index in [k.due(), k.state(qfrefund_ledger::State::Queued), k.created()] {
        let Some(score) = raw.zscore::<_, _, Option<f64>>(&index, &scoped).await.unwrap() else { continue };
        let _: () = redis::pipe().zrem(&index, &scoped).zadd(&index, otn, score).query_async(&mut raw).await.unwrap();
    }
    if raw.lrem::<_, _, u64>(k.ready(), 0, &scoped).await.unwrap() > 0 {
        let _: () = raw.rpush(k.ready(), otn).await.unwrap();
    }
    let _: () = redis::pipe()
        .hdel(k.payment(syssn), format!("r:{scoped}"))
        .hset(k.payment(syssn), format!("r:{otn}"), 1)
        .query_async(&mut raw)
        .await
        .unwrap();
}

/// Enqueues `refund` (of the default merchant), submits it and books QFPay's `answer` for it.
pub async fn submit_and_book(l: &Ledger, refund: qfrefund_ledger::NewRefund, answer: &SubmitResult) {
    let otn = refund.out_trade_no.clone();
    l.enqueue(refund).await.unwrap();
    let p = policy(5_000);
    let rec = l.get("default", &otn).await.unwrap().unwrap();
    let (fence, rec) =
        claimed(l.claim(&(&rec).into(), &qfrefund_ledger::ClaimOptions::new("w", &p, "t")).await.unwrap());
    let d = qfrefund_ledger::machine::after_submit(&rec, answer, &p, 0, 0.5);
    assert!(l.transition(&rec, qfrefund_ledger::State::Submitting, fence, &d, "op").await.unwrap());
}
