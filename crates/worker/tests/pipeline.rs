//! The pipeline end to end, in-process: ledger in a real redis-server, QFPay simulated over HTTP.
//! Every test checks the simulator's audit, not only the ledger.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Env, otns};
use ledger::State;
use testkit::Faults;

const FINAL: &[State] = &[State::Succeeded, State::Failed];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn happy_path_every_refund_succeeds_once() {
    let env = Env::start("happy", 30, Faults::default()).await;
    let ids = otns("RF-H", 30);
    for (i, o) in ids.iter().enumerate() {
        env.enqueue(i as u64 + 1, o, 1_000 + i as u64).await;
    }
    let w = env.worker();
    let recs = env.wait_for(&ids, &[State::Succeeded], Duration::from_secs(20)).await;
    for r in &recs {
        assert_eq!((r.submits, r.enquiries), (1, 0));
        assert!(r.refund_syssn.is_some());
    }
    env.assert_audit_agrees(&ids).await;
    assert_eq!(env.sim.audit()["totals"]["succeeded"], 30);
    w.stop().await;
}
