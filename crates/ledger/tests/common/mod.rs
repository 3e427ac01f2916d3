//! What the ledger's store tests share: a ledger on its own redis-server, a policy, claims.

#![allow(dead_code, clippy::unwrap_used)]

use std::time::Duration;

use ledger::machine::SubmitResult;
use ledger::{Claim, Ledger, LedgerConfig, Policy, Record};
use qfpay::RefundResponse;
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
