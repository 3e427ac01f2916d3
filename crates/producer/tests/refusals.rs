//! What a producer refuses so that no refund waits where nothing will send it, and how it reports
//! a batch Redis failed part way through: never "nothing was written" for a line that was.

#![allow(clippy::unwrap_used)]

use qfrefund_producer::{Accepted, Error, NewRefund, Producer, ProducerConfig};
use testkit::{TestRedis, raw_connection, test_shards, unique_namespace};

fn base(url: &str, namespace: &str) -> qfrefund_producer::ProducerConfigBuilder {
    ProducerConfig::builder().redis_url(url).namespace(namespace).shards(test_shards()).require_aof(false)
}

/// The ledger's layout hash (namespace `ns`, the default tag).
fn layout_key(ns: &str) -> String {
    format!("{ns}:{{default}}:layout")
}

async fn layout_field(url: &str, ns: &str, field: &str) -> Option<String> {
    redis::cmd("HGET").arg(layout_key(ns)).arg(field).query_async(&mut raw_connection(url).await).await.unwrap()
}

/// A ledger laid out as a worker of the fleet would (shards recorded at its first connect).
async fn lay_out(url: &str, namespace: &str) {
    let config = ledger::LedgerConfig {
        namespace: namespace.to_owned(),
        ..ledger::LedgerConfig::default().with_shards(test_shards())
    };
    ledger::Ledger::connect(url, config).await.unwrap();
}

#[tokio::test]
async fn a_ledger_no_worker_laid_out_is_refused_unless_the_producer_may_create_it() {
    let redis = TestRedis::start().unwrap();
    let ns = unique_namespace("producer-nolayout");
    let e = Producer::connect(base(&redis.url(), &ns).build().unwrap()).await.unwrap_err();
    assert!(matches!(e, Error::Config { .. }) && !e.is_retryable(), "{e}");
    assert!(e.to_string().contains(&ns) && e.to_string().contains("no worker"), "{e}");
    // Nothing was laid out by the refused producer: a worker of another layout could still start.
    assert_eq!(layout_field(&redis.url(), &ns, "shards").await, None);
    // Once a worker has laid it out (the key read above is the one it writes), the producer connects.
    lay_out(&redis.url(), &ns).await;
    assert_eq!(layout_field(&redis.url(), &ns, "shards").await, Some(test_shards().to_string()));
    Producer::connect(base(&redis.url(), &ns).build().unwrap()).await.unwrap();
}

#[tokio::test]
async fn a_pin_only_the_producer_has_is_refused_and_never_recorded() {
    let redis = TestRedis::start().unwrap();
    let ns = unique_namespace("producer-pin");
    let config = ledger::LedgerConfig { namespace: ns.clone(), ..ledger::LedgerConfig::default().with_shards(2) };
    ledger::Ledger::connect(&redis.url(), config).await.unwrap();
    // Allowed to create a ledger or not: this one exists, so its layout is the fleet's.
    for create in [false, true] {
        let c = ProducerConfig::builder()
            .redis_url(redis.url())
            .namespace(&ns)
            .shards(2)
            .merchant_shard("big", 1)
            .require_aof(false)
            .create_ledger(create)
            .build()
            .unwrap();
        let e = Producer::connect(c).await.unwrap_err();
        assert!(matches!(e, Error::Config { .. }) && e.to_string().contains("\"big\""), "{e}");
        let pin = layout_field(&redis.url(), &ns, "pin:big").await;
        assert_eq!(pin, None, "a refused producer (create_ledger {create}) wrote the fleet's layout");
    }
    // The key read is the fleet's layout: it holds the shard count the first process wrote.
    assert_eq!(layout_field(&redis.url(), &ns, "shards").await, Some("2".to_owned()));
}

#[tokio::test]
async fn a_merchant_nothing_would_sign_for_is_refused() {
    let redis = TestRedis::start().unwrap();
    let ns = unique_namespace("producer-merchant");
    lay_out(&redis.url(), &ns).await;
    // No merchant configured and no live worker: it cannot be told, so retry later.
    let blind = Producer::connect(base(&redis.url(), &ns).build().unwrap()).await.unwrap();
    let e = blind.enqueue(NewRefund::new("20251125000100020000000001", "RF-M1", 100)).await.unwrap_err();
    assert!(matches!(e, Error::Unavailable(_)) && e.is_retryable(), "{e}");

    let p = Producer::connect(base(&redis.url(), &ns).merchant("default").build().unwrap()).await.unwrap();
    let mut typo = NewRefund::new("20251125000100020000000001", "RF-M2", 100);
    typo.merchant = Some("shop-bb".into());
    let e = p.enqueue(typo.clone()).await.unwrap_err();
    assert!(matches!(&e, Error::Invalid { field, .. } if field == "merchant") && !e.is_retryable(), "{e}");
    assert!(e.to_string().contains("shop-bb") && e.to_string().contains("default"), "{e}");
    // The same in a batch: that line is refused, the others go in.
    let ok = NewRefund::new("20251125000100020000000001", "RF-M3", 100);
    let results = p.enqueue_batch(vec![typo, ok]).await;
    assert!(matches!(&results[0], Err(Error::Invalid { field, .. }) if field == "merchant"), "{results:?}");
    assert!(matches!(results[1], Ok(Accepted::Created)), "{results:?}");
    assert!(p.get("shop-bb", "RF-M2").await.unwrap().is_none());
    // A malformed event id is the caller's to fix, not a retry.
    let e = p.events("yesterday", 10).await.unwrap_err();
    assert!(matches!(&e, Error::Invalid { field, .. } if field == "after"), "{e}");
}

#[tokio::test]
async fn credentials_redis_refuses_are_not_retryable() {
    let redis = testkit::RedisServer::builder().password("producer-pw").start().unwrap();
    let url = redis.url().replace(":producer-pw@", "");
    assert!(!url.contains("producer-pw"), "{url}");
    let ns = unique_namespace("producer-auth");
    let e = Producer::connect(base(&url, &ns).create_ledger(true).build().unwrap()).await.unwrap_err();
    assert!(!e.is_retryable(), "a missing password was called retryable: {e}");
    let wrong = redis.url().replace("producer-pw", "not-the-password");
    let e = Producer::connect(base(&wrong, &ns).create_ledger(true).build().unwrap()).await.unwrap_err();
    assert!(!e.is_retryable() && !e.to_string().contains("not-the-password"), "{e}");
}

#[tokio::test]
async fn a_batch_redis_fails_part_way_never_calls_a_written_line_unwritten() {
    let redis = TestRedis::start().unwrap();
    let ns = unique_namespace("producer-oom");
    let p = Producer::connect(base(&redis.url(), &ns).merchant("default").create_ledger(true).build().unwrap())
        .await
        .unwrap();
    let mut con = raw_connection(&redis.url()).await;
    // Room for a few dozen refunds: the first script of the pipeline runs (and fills it), the
    // ones after it are answered OOM.
    let info: String = redis::cmd("INFO").arg("memory").query_async(&mut con).await.unwrap();
    let used: u64 = info.lines().find_map(|l| l.strip_prefix("used_memory:")).unwrap().trim().parse().unwrap();
    let _: () =
        redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg(used + 1024 * 1024).query_async(&mut con).await.unwrap();
    let refunds: Vec<NewRefund> =
        (0..2000).map(|i| NewRefund::new("20251125000100020000000001", &format!("RF-OOM-{i:04}"), 100)).collect();
    let results = p.enqueue_batch(refunds).await;
    let _: () = redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg(0).query_async(&mut con).await.unwrap();

    let (mut accepted, mut unwritten) = (0, 0);
    for (i, r) in results.iter().enumerate() {
        let otn = format!("RF-OOM-{i:04}");
        let stored = p.get("default", &otn).await.unwrap();
        match r {
            Ok(_) => {
                accepted += 1;
                assert!(stored.is_some(), "{otn} accepted but not in the ledger");
            }
            Err(e @ Error::Unavailable(_)) => {
                unwritten += 1;
                assert!(stored.is_none(), "{otn} reported as not written ({e}), but it is in the ledger");
            }
            Err(e) => assert!(e.outcome_unknown(), "{otn}: {e}"),
        }
    }
    assert!(accepted > 0 && accepted < results.len(), "the limit did not fall inside the batch: {accepted} accepted");
    eprintln!("{accepted} accepted, {unwritten} not written, the rest of unknown outcome");
    // Retried as the errors say (the same requests), every line is in the ledger once.
    let again: Vec<NewRefund> =
        (0..2000).map(|i| NewRefund::new("20251125000100020000000001", &format!("RF-OOM-{i:04}"), 100)).collect();
    let results = p.enqueue_batch(again).await;
    assert!(results.iter().all(|r| r.is_ok()), "{:?}", results.iter().find(|r| r.is_err()));
    let created = results.iter().filter(|r| matches!(r, Ok(Accepted::Created))).count();
    assert_eq!(created + accepted, 2000, "a line accepted the first time was created again, or one is missing");
}
