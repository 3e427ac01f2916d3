//! The outcome stream is trimmed by age, never past an entry a consumer group has not finished
//! with (read and acknowledged, or not read at all).

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use qfrefund_ledger::NewRefund;
use redis::AsyncCommands;
use testkit::raw_connection;

use common::ledger_with;

const OLD: [&str; 5] = ["1000-1", "1000-2", "1000-3", "1000-4", "1000-5"];

/// A ledger whose stream holds five entries from 1970 and one from now; stream nodes of one entry,
/// so the approximate trim is exact.
async fn staged(
    name: &str,
) -> (testkit::TestRedis, qfrefund_ledger::Ledger, redis::aio::MultiplexedConnection, String) {
    let (redis, l) = ledger_with(name, 1).await;
    let mut raw = raw_connection(&redis.url()).await;
    let _: () =
        redis::cmd("CONFIG").arg("SET").arg("stream-node-max-entries").arg(1).query_async(&mut raw).await.unwrap();
    let key = l.shard_keys(0).events();
    for id in OLD {
        let _: String = raw.xadd(&key, id, &[("out_trade_no", "OLD"), ("state", "succeeded")]).await.unwrap();
    }
    l.enqueue(NewRefund::new("1", "RF-NEW", 1)).await.unwrap();
    (redis, l, raw, key)
}

async fn ids(raw: &mut redis::aio::MultiplexedConnection, key: &str) -> Vec<String> {
    let r: redis::streams::StreamRangeReply = raw.xrange_all(key).await.unwrap();
    r.ids.into_iter().map(|e| e.id).collect()
}

#[tokio::test]
async fn old_entries_go_and_recent_ones_stay() {
    let (_r, l, mut raw, key) = staged("trim-age").await;
    assert_eq!(l.trim_events(0, Duration::from_secs(3600)).await.unwrap(), 5);
    let left = ids(&mut raw, &key).await;
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(l.events("0", 10).await.unwrap()[0].out_trade_no, "RF-NEW");
    assert_eq!(l.trim_events(0, Duration::from_secs(3600)).await.unwrap(), 0, "nothing more is old");
}

#[tokio::test]
async fn a_group_keeps_what_it_has_not_finished() {
    let (_r, l, mut raw, key) = staged("trim-groups").await;
    // A group that has read nothing keeps everything.
    let _: () = raw.xgroup_create(&key, "g", "0").await.unwrap();
    assert_eq!(l.trim_events(0, Duration::from_secs(3600)).await.unwrap(), 0);
    // Read two, acknowledge the first: the second, pending, and all after it stay.
    let opts = redis::streams::StreamReadOptions::default().group("g", "c1").count(2);
    let _: redis::streams::StreamReadReply = raw.xread_options(&[&key], &[">"], &opts).await.unwrap();
    let _: u64 = raw.xack(&key, "g", &["1000-1"]).await.unwrap();
    assert_eq!(l.trim_events(0, Duration::from_secs(3600)).await.unwrap(), 1);
    assert_eq!(ids(&mut raw, &key).await[0], "1000-2");
    // Everything read and acknowledged: the old entries go, the group's place is kept.
    let all = redis::streams::StreamReadOptions::default().group("g", "c1").count(100);
    let _: redis::streams::StreamReadReply = raw.xread_options(&[&key], &[">"], &all).await.unwrap();
    let every: Vec<String> = ids(&mut raw, &key).await;
    let _: u64 = raw.xack(&key, "g", &every).await.unwrap();
    assert_eq!(l.trim_events(0, Duration::from_secs(3600)).await.unwrap(), 4);
    assert_eq!(ids(&mut raw, &key).await.len(), 1);
    // A second group created at the start of what is left is kept to as well.
    let _: () = raw.xgroup_create(&key, "h", "0").await.unwrap();
    assert_eq!(l.trim_events(0, Duration::from_secs(0)).await.unwrap(), 0, "h has read nothing");
}

#[tokio::test]
async fn a_ledger_without_an_outcome_stream_yet_has_nothing_to_trim() {
    let (redis, l) = ledger_with("trim_no_stream", 1).await;
    let mut raw = raw_connection(&redis.url()).await;
    let key = l.shard_keys(0).events();
    assert!(!raw.exists::<_, bool>(&key).await.unwrap(), "no stream yet");
    assert_eq!(l.trim_events(0, Duration::from_secs(3600)).await.unwrap(), 0, "no stream, no error");
}
