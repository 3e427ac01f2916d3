//! What the runtime around a step may not do: cancel it. A step that has claimed runs to its
//! transition whatever happens to the fetch loop (here: Redis refusing scripts for a while, which
//! fails each fetch, while the requests are in flight).

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Env, otns};
use ledger::State;
use testkit::Faults;

/// With apalis-redis, a Redis error ended apalis' stream and cancelled the steps in flight: they
/// stayed `submitting` until their leases expired and were then enquired. Now the fetch loop backs
/// off and the steps finish: each refund is sent once, settled by its own answer, never enquired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_errors_never_cancel_a_step_in_flight() {
    let faults = Faults { latency_ms: 1_200, ..Faults::default() };
    let mut env =
        Env::start_with("in-flight", testkit::SimConfig { faults, ..testkit::SimConfig::demo(8) }, false).await;
    env.config.policy.lease = std::time::Duration::from_secs(6);
    env.config.policy.not_found_grace = std::time::Duration::from_secs(6);
    env.config.http.timeout = Duration::from_secs(4);
    let ids = otns("RF-F", 8);
    for (i, o) in ids.iter().enumerate() {
        env.enqueue(i as u64 + 1, o, 100).await;
    }
    let w = env.worker();
    env.wait_for(&ids, &[State::Submitting], Duration::from_secs(10)).await;
    // Scripts refused for a while (an ACL change): every fetch fails, over and over.
    let mut admin = redis::Client::open(env.redis.url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let acl = |rule: &'static str| redis::cmd("ACL").arg("SETUSER").arg("default").arg(rule).to_owned();
    let _: () = acl("-evalsha").arg("-eval").query_async(&mut admin).await.unwrap();
    // Wake the idle fetcher, again and again: each fetch is refused.
    for _ in 0..12 {
        let _: i64 = redis::cmd("PUBLISH")
            .arg(env.ledger.keys_for("default").wake())
            .arg(1)
            .query_async(&mut admin)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _: () = acl("+@all").query_async(&mut admin).await.unwrap();
    let errors: String = redis::cmd("INFO").arg("errorstats").query_async(&mut admin).await.unwrap();
    assert!(errors.contains("errorstat_NOPERM"), "the fetches were refused: {errors}");
    let recs = env.wait_for(&ids, &[State::Succeeded], Duration::from_secs(20)).await;
    for r in &recs {
        assert_eq!((r.submits, r.enquiries), (1, 0), "{}: sent once, settled by its own answer", r.out_trade_no);
    }
    env.assert_audit_agrees(&ids).await;
    w.stop().await;
}

/// Workers trim their shards' outcome streams by age: with a retention of a second, the stream of
/// a finished run shrinks to what its last nodes hold, and every refund is still there to read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_trim_the_outcome_stream_by_age() {
    let mut env = Env::start("trim", 300, Faults::default()).await;
    env.config.events_retention = Duration::from_secs(1);
    let ids = otns("RF-T", 300);
    for (i, o) in ids.iter().enumerate() {
        env.enqueue(i as u64 + 1, o, 100).await;
    }
    let w = env.worker();
    env.wait_for(&ids, &[State::Succeeded], Duration::from_secs(30)).await;
    // Trimming may have begun while they ran: count what was ever added, not what is left.
    let full = entries_added(&env).await;
    assert!(full >= 600, "three entries or more a refund: {full}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while stream_len(&env).await > 200 {
        assert!(std::time::Instant::now() < deadline, "still {} entries of {full}", stream_len(&env).await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(env.record("RF-T1").await.state, State::Succeeded, "records are not trimmed");
    w.stop().await;
}

async fn entries_added(env: &Env) -> u64 {
    let key = env.ledger.keys_for("default").events();
    let info: Vec<redis::Value> =
        redis::cmd("XINFO").arg("STREAM").arg(key).query_async(&mut env.raw().await).await.unwrap();
    let mut it = info.into_iter();
    while let Some(k) = it.next() {
        let v = it.next();
        if redis::from_redis_value::<String>(k).is_ok_and(|k| k == "entries-added") {
            return v.and_then(|v| redis::from_redis_value(v).ok()).unwrap_or(0);
        }
    }
    0
}

async fn stream_len(env: &Env) -> u64 {
    let key = env.ledger.keys_for("default").events();
    redis::cmd("XLEN").arg(key).query_async(&mut env.raw().await).await.unwrap()
}
