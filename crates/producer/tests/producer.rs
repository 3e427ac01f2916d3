//! The producer facade against a real redis-server: idempotent enqueue, a conflict refused and
//! not retryable, a batch, a lookup, the outcome stream, a layout mismatch refused at connect.
//! The refusals that keep refunds from waiting where nothing sends them (a ledger no worker laid
//! out, a pin of the producer's own, an unknown merchant) are in `refusals.rs`.

#![allow(clippy::unwrap_used)]

use qfrefund_producer::{Accepted, Enqueued, Error, NewRefund, Producer, ProducerConfig, State};
use testkit::{TestRedis, test_shards, unique_namespace};

fn config(url: &str, namespace: &str) -> ProducerConfig {
    // (The test server may run without AOF: a producer refuses that by default.)
    ProducerConfig::builder()
        .redis_url(url)
        .namespace(namespace)
        .shards(test_shards())
        .require_aof(false)
        // A fleet's first process lays the ledger out; here the producer is the first.
        .create_ledger(true)
        .merchant("default")
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_producer_enqueues_once_and_follows_its_refunds() {
    let redis = TestRedis::start().unwrap();
    let ns = unique_namespace("producer");
    let p = Producer::connect(config(&redis.url(), &ns)).await.unwrap();

    let mut refund = NewRefund::new("20251125000100020000000001", "RF-P1", 1500);
    refund.orig_txamt = Some(5000);
    let Enqueued::Created(rec) = p.enqueue(refund.clone()).await.unwrap() else { panic!("new") };
    assert_eq!((rec.state, rec.txamt), (State::Queued, 1500));
    // The same request again: the same refund, not a second one.
    assert!(matches!(p.enqueue(refund.clone()).await.unwrap(), Enqueued::Duplicate(_)));
    // Another request under the same id: refused, and no retry will mend it.
    let mut other = refund.clone();
    other.txamt = 1600;
    let e = p.enqueue(other).await.unwrap_err();
    assert!(matches!(e, Error::Conflict { .. }) && !e.is_retryable(), "{e}");
    // Invalid input names its field.
    let e = p.enqueue(NewRefund::new("20251125000100020000000001", "RF-P0", 0)).await.unwrap_err();
    assert!(matches!(&e, Error::Invalid { field, .. } if field == "txamt"), "{e}");

    let batch = vec![
        NewRefund::new("20251125000100020000000002", "RF-P2", 100),
        refund.clone(),
        NewRefund::new("20251125000100020000000003", "bad id!", 100),
    ];
    let results = p.enqueue_batch(batch).await;
    assert!(matches!(results[0], Ok(Accepted::Created)), "{results:?}");
    assert!(matches!(results[1], Ok(Accepted::Duplicate)), "{results:?}");
    assert!(matches!(&results[2], Err(Error::Invalid { field, .. }) if field == "out_trade_no"), "{results:?}");

    let got = p.get("default", "RF-P2").await.unwrap().unwrap();
    assert_eq!(got.txamt, 100);
    assert!(p.get("default", "RF-NONE").await.unwrap().is_none());

    // An outcome (here an operator's cancel) is on the stream the producer reads.
    let ledger = ledger::Ledger::connect(
        &redis.url(),
        ledger::LedgerConfig { namespace: ns.clone(), ..ledger::LedgerConfig::default().with_shards(test_shards()) },
    )
    .await
    .unwrap();
    ledger.operate("default", "RF-P2", ledger::Operation::Cancel, "ops", "customer kept it").await.unwrap().unwrap();
    let events = p.events("0", 10).await.unwrap();
    assert!(events.iter().any(|e| e.out_trade_no == "RF-P2" && e.state == "cancelled"), "{events:?}");
    // Read on after the last one: nothing new.
    let last = &events.last().unwrap().id;
    assert!(p.events(last, 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_redis_that_would_lose_refunds_is_refused_not_retried() {
    // testkit's server without AOF: refused by default, and no retry changes that.
    let redis = testkit::RedisServer::builder().arg("--appendonly").arg("no").start().unwrap();
    let c =
        ProducerConfig::builder().redis_url(redis.url()).namespace(unique_namespace("producer-aof")).build().unwrap();
    let e = Producer::connect(c).await.unwrap_err();
    assert!(!e.is_retryable() && e.to_string().contains("append-only"), "{e}");
}

#[tokio::test]
async fn a_producer_laid_out_otherwise_than_the_ledger_is_refused() {
    let redis = TestRedis::start().unwrap();
    let ns = unique_namespace("producer-layout");
    let first = Producer::connect(config(&redis.url(), &ns)).await.unwrap();
    first.enqueue(NewRefund::new("20251125000100020000000001", "RF-L1", 1)).await.unwrap();
    let other =
        ProducerConfig::builder().redis_url(redis.url()).namespace(&ns).shards(test_shards() + 1).build().unwrap();
    let e = Producer::connect(other).await.unwrap_err();
    assert!(!e.is_retryable(), "{e}");
    assert!(e.to_string().contains("shard"), "{e}");
}
