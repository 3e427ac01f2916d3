//! A worker over a ledger in shards: each fetch starts at the next shard in turn, so a shard with
//! a deep backlog never starves one with a single refund due; `serve_shards` keeps a worker to the
//! shards it names.

#![allow(clippy::unwrap_used)]

mod common;

use ledger::{Ledger, NewRefund};
use qfrefund_worker::processor::Processor;
use testkit::{RedisServer, unique_namespace};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_shard_never_starves_another_and_serve_shards_narrows_the_fetch() {
    let redis = RedisServer::start().unwrap();
    let ns = unique_namespace("fair");
    let mut c = common::fast_config(&redis.url(), "http://127.0.0.1:1", &ns);
    c.ledger = c.ledger.clone().with_shards(4);
    let ledger = Ledger::connect(&redis.url(), c.ledger.clone()).await.unwrap();
    // Two merchants on two different shards.
    let names: Vec<String> = (0..16).map(|i| format!("m{i}")).collect();
    let busy = names[0].clone();
    let quiet = names.iter().find(|m| ledger.shard_of(m) != ledger.shard_of(&busy)).unwrap().clone();
    for m in [&busy, &quiet] {
        let mut merchant = c.merchants["default"].clone();
        merchant.name = m.clone();
        merchant.app_code = format!("APP-{m}");
        c.merchants.insert(m.clone(), merchant);
    }
    let refund = |m: &str, i: usize| NewRefund {
        merchant: Some(m.into()),
        orig_txamt: Some(1_000),
        ..NewRefund::new(&format!("P-{m}-{i}"), &format!("RF-{i}"), 1)
    };
    let backlog: Vec<NewRefund> = (0..300).map(|i| refund(&busy, i)).collect();
    for r in ledger.enqueue_batch(backlog).await {
        r.unwrap();
    }
    ledger.enqueue(refund(&quiet, 0)).await.unwrap();

    // Only the busy merchant's shard: nothing of the quiet one's is claimed.
    let mut narrow = c.clone();
    narrow.serve_shards = Some(vec![ledger.shard_of(&busy)]);
    let p = Processor::new(ledger.clone(), &narrow, "narrow".into()).unwrap();
    for _ in 0..4 {
        let batch = p.fetch(20).await.unwrap();
        assert_eq!(batch.tasks.len(), 20);
        assert!(batch.tasks.iter().all(|t| t.target.merchant == busy), "{batch:?}");
    }

    // Every shard: the quiet shard's refund is claimed within one round of the shards, however
    // deep the busy shard's backlog.
    let p = Processor::new(ledger.clone(), &c, "all".into()).unwrap();
    let mut fetches = 0;
    loop {
        fetches += 1;
        let batch = p.fetch(20).await.unwrap();
        if batch.tasks.iter().any(|t| t.target.merchant == quiet) {
            break;
        }
        assert!(fetches < ledger.shard_count(), "the quiet shard waited {fetches} fetches");
    }
}
