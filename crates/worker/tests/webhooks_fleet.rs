//! Webhooks in a fleet where not every worker holds every merchant's hook: against a real
//! redis-server, the simulator and a real HTTP receiver on loopback.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{Env, Worker, hook_receiver, otns, stream, wait_delivered, with_hook, with_other_hook, xadd};
use ledger::State;
use testkit::Faults;

/// Entries read but not acknowledged, over every consumer group of the outcome stream.
async fn pending_total(env: &Env) -> u64 {
    let groups: Vec<HashMap<String, redis::Value>> = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(env.ledger.keys_for("default").events())
        .query_async(&mut env.raw().await)
        .await
        .unwrap();
    groups.iter().map(|g| redis::from_redis_value::<u64>(g["pending"].clone()).unwrap()).sum()
}

/// A mixed fleet: one worker holds the default merchant's webhook, the other does not. Both read
/// the outcome stream; every final outcome still reaches the receiver, and nothing is left
/// pending — not the outcomes, not the entries no webhook wants (other merchants, other states).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn webhook_outcome_is_acked_only_by_a_worker_that_can_deliver_it() {
    let env = Env::start("hooks-fleet", 20, Faults::default()).await;
    let (url, got) = hook_receiver().await;
    let with = Worker::start(with_hook(env.config.clone(), &url, "with-hook"));
    let (other_url, other_got) = hook_receiver().await;
    let without = Worker::start(with_other_hook(env.config.clone(), &other_url, "without-hook"));
    common::wait_group(&env, "default").await;
    let ids = otns("RF-FLEET", 20);
    for (i, o) in ids.iter().enumerate() {
        env.enqueue(i as u64 + 1, o, 100).await;
    }
    // An outcome of a merchant no worker has a webhook for.
    let mut foreign: Vec<(String, String)> = stream(&env).await[0].1.clone();
    for (k, v) in &mut foreign {
        match k.as_str() {
            "merchant" => *v = "nobody-hooks-this".into(),
            "state" => *v = "succeeded".into(),
            "out_trade_no" => *v = "RF-FOREIGN".into(),
            _ => {}
        }
    }
    xadd(&env, &foreign).await;
    env.wait_for(&ids, &[State::Succeeded], Duration::from_secs(30)).await;
    wait_delivered(&got, &ids, Duration::from_secs(20)).await;
    assert!(!common::delivered_otns(&got).contains("RF-FOREIGN"), "only the merchant's own outcomes");
    assert!(other_got.lock().unwrap().is_empty(), "not the other merchant's hook");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while pending_total(&env).await > 0 {
        assert!(std::time::Instant::now() < deadline, "entries stay pending: {}", pending_total(&env).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stats = env.ledger.stats().await.unwrap();
    assert_eq!((stats.webhooks_failed, stats.webhooks_retrying), (0, 0));
    with.stop().await;
    without.stop().await;
}

/// The only worker holding the hook is down while another settles refunds: the outcomes wait in
/// the hook's consumer group and are delivered when a worker holding it comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn outcomes_settled_while_no_hook_holder_runs_are_delivered_when_one_returns() {
    let env = Env::start("hooks-return", 5, Faults::default()).await;
    let (url, got) = hook_receiver().await;
    let hooked = with_hook(env.config.clone(), &url, "with-hook");
    let first = Worker::start(hooked.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    first.stop().await;
    let (other_url, other_got) = hook_receiver().await;
    let without = Worker::start(with_other_hook(env.config.clone(), &other_url, "without-hook"));
    let ids = otns("RF-BACK", 5);
    for (i, o) in ids.iter().enumerate() {
        env.enqueue(i as u64 + 1, o, 100).await;
    }
    env.wait_for(&ids, &[State::Succeeded], Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await; // the other worker reads the stream meanwhile
    assert!(got.lock().unwrap().is_empty());
    assert!(other_got.lock().unwrap().is_empty(), "not the other merchant's hook");
    let back = Worker::start(hooked);
    wait_delivered(&got, &ids, Duration::from_secs(20)).await;
    back.stop().await;
    without.stop().await;
}

/// Reads every new entry of the outcome stream for `consumer` of `group` and acknowledges none:
/// a worker that died mid-delivery.
async fn read_and_die(env: &Env, group: &str, consumer: &str) -> usize {
    let reply: Option<redis::streams::StreamReadReply> = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(group)
        .arg(consumer)
        .arg("COUNT")
        .arg(10_000)
        .arg("STREAMS")
        .arg(env.ledger.keys_for("default").events())
        .arg(">")
        .query_async(&mut env.raw().await)
        .await
        .unwrap();
    reply.map_or(0, |r| r.keys.iter().map(|k| k.ids.len()).sum())
}

/// Settles `n` refunds with a worker that holds no webhook.
async fn settle_without_hooks(env: &Env, prefix: &str, n: usize) -> Vec<String> {
    let ids = otns(prefix, n);
    for (i, o) in ids.iter().enumerate() {
        env.enqueue(i as u64 + 1, o, 100).await;
    }
    let w = env.worker();
    env.wait_for(&ids, &[State::Succeeded], Duration::from_secs(30)).await;
    w.stop().await;
    ids
}

/// A worker of the merchant's group read outcomes and died before acknowledging them: another
/// worker holding the hook takes them over after `claim_idle` and delivers them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn outcomes_a_dead_reader_held_are_taken_over_and_delivered() {
    let env = Env::start("hooks-orphans", 3, Faults::default()).await;
    let (url, got) = hook_receiver().await;
    let mut hooked = with_hook(env.config.clone(), &url, "with-hook");
    hooked.webhooks.claim_idle = Duration::from_millis(300);
    hooked.webhooks.timeout = Duration::from_millis(250);
    let first = Worker::start(hooked.clone());
    tokio::time::sleep(Duration::from_millis(500)).await; // creates the merchant's group
    first.stop().await;
    let ids = settle_without_hooks(&env, "RF-ORPHAN", 3).await;
    assert!(read_and_die(&env, &qfrefund_worker::webhooks::group_of("default"), "dead").await >= 3);
    let w = Worker::start(hooked);
    wait_delivered(&got, &ids, Duration::from_secs(20)).await;
    w.stop().await;
}

/// Upgrading from the single group `webhooks`: the old fleet had read outcomes but died before
/// acknowledging them. The merchant's new group starts before the oldest of them, so they are
/// delivered rather than skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_upgrade_from_the_single_group_skips_no_outcome() {
    let env = Env::start("hooks-upgrade", 3, Faults::default()).await;
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(env.ledger.keys_for("default").events())
        .arg("webhooks")
        .arg("$")
        .arg("MKSTREAM")
        .query_async(&mut env.raw().await)
        .await
        .unwrap();
    let ids = settle_without_hooks(&env, "RF-UPGRADE", 3).await;
    assert!(read_and_die(&env, "webhooks", "old-worker").await >= 3);
    let (url, got) = hook_receiver().await;
    let w = Worker::start(with_hook(env.config.clone(), &url, "with-hook"));
    wait_delivered(&got, &ids, Duration::from_secs(20)).await;
    w.stop().await;
}
