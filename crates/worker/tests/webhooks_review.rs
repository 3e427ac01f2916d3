//! A refund entering `needs_review` is announced to its merchant's webhook as
//! `refund.needs_review`, signed like every delivery; each stay there is its own announcement.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Env, Worker};
use ledger::State;
use qfrefund_worker::webhooks::{Webhook, delivery_id};
use testkit::Faults;

/// The bodies received so far whose type is `refund.needs_review`, with their event ids.
fn reviews(got: &common::Received) -> Vec<(String, serde_json::Value)> {
    got.lock()
        .unwrap()
        .iter()
        .filter_map(|(id, _, body, _)| Some((id.clone(), serde_json::from_slice::<serde_json::Value>(body).ok()?)))
        .filter(|(_, v)| v["type"] == "refund.needs_review")
        .collect()
}

async fn wait_reviews(got: &common::Received, n: usize) -> Vec<(String, serde_json::Value)> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let seen = reviews(got);
        if seen.len() >= n {
            return seen;
        }
        assert!(Instant::now() < deadline, "{} needs_review deliveries of {n}", seen.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_entering_needs_review_is_announced_once_per_stay() {
    // QFPay keeps answering "processing": past its maximum age the refund needs a person.
    let env =
        Env::start("hook-review", 1, Faults { processing: 1.0, processing_ms: 600_000, ..Faults::default() }).await;
    let (url, got) = common::hook_receiver().await;
    let hook = Webhook::new(&url, "whsec-test-0123456789").unwrap();
    let mut config = env.config.clone();
    config.policy.max_age = Duration::from_millis(1_500);
    config.merchants.get_mut("default").unwrap().webhook = Some(hook.clone());
    let w = Worker::start(config);
    common::wait_group(&env, "default").await;
    env.enqueue(1, "RF-NR1", 100).await;
    env.wait_for(&["RF-NR1".into()], &[State::NeedsReview], Duration::from_secs(20)).await;
    let first = wait_reviews(&got, 1).await;
    let (id, body) = &first[0];
    assert_eq!(body["out_trade_no"], "RF-NR1");
    assert_eq!(body["state"], "needs_review");
    assert_eq!(&body["id"], id, "the body's id is the event id header");
    assert!(body["reason"].as_str().unwrap().contains("max age"), "{body}");
    let event =
        env.ledger.events("0", 100).await.unwrap().into_iter().rev().find(|e| e.state == "needs_review").unwrap();
    assert_eq!(id, &delivery_id(&event));
    // Signed as every delivery is.
    let g = got.lock().unwrap().clone();
    let (_, sig, raw, standard) = g.iter().find(|(i, ..)| i == id).unwrap();
    assert_eq!(sig, &hook.signature(raw));
    assert_eq!(standard.signature, hook.standard_signature(id, standard.timestamp.parse().unwrap(), raw));

    // An operator retries it; still past its age, it comes back: a second announcement, its own id.
    env.ledger
        .operate("default", "RF-NR1", ledger::Operation::Retry, "ops", "QFPay says try again")
        .await
        .unwrap()
        .unwrap();
    let both = wait_reviews(&got, 2).await;
    assert_ne!(both[0].0, both[1].0, "each stay in needs_review is announced under its own id");
    assert_eq!(both[1].1["out_trade_no"], "RF-NR1");
    w.stop().await;
}
