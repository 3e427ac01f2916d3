//! A final outcome written again after a Redis rollback is announced under the same event id:
//! against a real redis-server, the simulator and a real HTTP receiver on loopback.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Env, Worker, hook_receiver, stream, wait_delivered, with_hook, xadd};
use ledger::State;
use testkit::Faults;

/// After a rollback the same final outcome can be written again — as a new stream entry, under
/// the same fence or under a new claim's. Receivers de-duplicate on the event id: it must be the
/// same every time, in the header and in the body.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replayed_outcome_is_announced_under_the_same_event_id() {
    let env = Env::start("hooks-replay", 1, Faults::default()).await;
    let (url, got) = hook_receiver().await;
    let w = Worker::start(with_hook(env.config.clone(), &url, "with-hook"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    env.enqueue(1, "RF-REPLAY", 100).await;
    env.wait_for(&["RF-REPLAY".into()], &[State::Succeeded], Duration::from_secs(20)).await;
    wait_delivered(&got, &["RF-REPLAY".into()], Duration::from_secs(20)).await;
    let entries = stream(&env).await;
    let (_, last) =
        entries.iter().rev().find(|(_, f)| f.iter().any(|(k, v)| k == "state" && v == "succeeded")).unwrap();
    xadd(&env, last).await; // the same transition written again
    let mut later = last.clone();
    for (k, v) in &mut later {
        if k == "fence" {
            *v = (v.parse::<u64>().unwrap() + 1_000).to_string(); // … or reached again under a new claim
        }
    }
    xadd(&env, &later).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while got.lock().unwrap().len() < 3 {
        assert!(std::time::Instant::now() < deadline, "replays not delivered: {}", got.lock().unwrap().len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let g = got.lock().unwrap().clone();
    let ids: Vec<&String> = g.iter().map(|(id, _, _, _)| id).collect();
    let mut stream_ids = std::collections::BTreeSet::new();
    for (id, _, body, _) in &g {
        let v: serde_json::Value = serde_json::from_slice(body).unwrap();
        assert_eq!(id, &g[0].0, "one event id for one outcome: {ids:?}");
        assert_eq!(&v["id"], id, "the body names the same id as the header");
        stream_ids.insert(v["stream_id"].as_str().unwrap_or_default().to_owned());
    }
    assert_eq!(stream_ids.len(), 3, "each delivery still names the stream entry it came from");
    w.stop().await;
}
