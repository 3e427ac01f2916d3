//! The ledger's operations for webhook deliverers against a real redis-server: consumer groups on
//! the outcome stream, and the retry and failed schedules.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::ledger;
use qfrefund_ledger::{LedgerError, NewRefund, WebhookAttempt};

/// A group is created once and found where it stands; a reader is handed each entry once, takes
/// over what a vanished consumer left unacknowledged, and is told in a type when its group is gone.
#[tokio::test]
async fn a_consumer_group_hands_out_each_entry_once_and_says_when_it_is_gone() {
    let (r, l) = ledger("groups").await;
    assert_eq!(l.group_position(l.shard_of("default"), "g").await.unwrap(), None, "no stream yet");
    assert!(l.create_group(l.shard_of("default"), "g", None).await.unwrap());
    assert!(
        !l.create_group(l.shard_of("default"), "g", Some("0-0")).await.unwrap(),
        "exists already: left where it stands"
    );
    assert_eq!(l.group_position(l.shard_of("default"), "other").await.unwrap(), None, "no such group");
    l.enqueue(NewRefund::new("P1", "RF1", 1)).await.unwrap();
    l.enqueue(NewRefund::new("P2", "RF2", 1)).await.unwrap();

    let mut dead = l.stream_reader(l.shard_of("default"), "g", "dead").await.unwrap();
    let read = dead.read_new(10, Duration::from_millis(10)).await.unwrap();
    let otns: Vec<&str> = read.iter().map(|e| e.out_trade_no.as_str()).collect();
    assert_eq!(otns, ["RF1", "RF2"]);
    assert_eq!(read[0].state, "queued");
    assert!(dead.read_new(10, Duration::from_millis(10)).await.unwrap().is_empty(), "handed out once");
    // A new group started where `g` stands misses nothing `g` has not acknowledged.
    assert_eq!(
        l.group_position(l.shard_of("default"), "g").await.unwrap().as_deref(),
        Some(id_before_first(&read[0].id).as_str())
    );

    let alive = l.stream_reader(l.shard_of("default"), "g", "alive").await.unwrap();
    assert!(alive.take_over(Duration::from_secs(60), 10).await.unwrap().is_empty(), "not idle long enough");
    tokio::time::sleep(Duration::from_millis(30)).await;
    let taken = alive.take_over(Duration::from_millis(20), 10).await.unwrap();
    assert_eq!(taken.iter().map(|e| &e.id).collect::<Vec<_>>(), read.iter().map(|e| &e.id).collect::<Vec<_>>());
    let ids: Vec<String> = taken.into_iter().map(|e| e.id).collect();
    alive.ack(&ids).await.unwrap();
    alive.ack(&[]).await.unwrap();
    assert_eq!(
        l.group_position(l.shard_of("default"), "g").await.unwrap(),
        Some(ids[1].clone()),
        "all acknowledged: the last handed out"
    );

    let mut raw = testkit::raw_connection(&r.url()).await;
    let _: () = redis::cmd("DEL").arg(l.keys_for("default").events()).query_async(&mut raw).await.unwrap();
    let gone = dead.read_new(10, Duration::from_millis(10)).await.unwrap_err();
    assert!(matches!(&gone, LedgerError::NoGroup(g) if g == "g"), "{gone:?}");
    assert!(matches!(alive.take_over(Duration::ZERO, 10).await, Err(LedgerError::NoGroup(_))));
    assert!(l.create_group(l.shard_of("default"), "g", None).await.unwrap(), "created again");
    assert!(dead.read_new(10, Duration::from_millis(10)).await.unwrap().is_empty());
}

/// The id `XGROUP CREATE` must be given to hand out `id` and what follows.
fn id_before_first(id: &str) -> String {
    let (ms, seq) = id.split_once('-').unwrap();
    match seq.parse::<u64>().unwrap() {
        0 => format!("{}-{}", ms.parse::<u64>().unwrap() - 1, u64::MAX),
        s => format!("{ms}-{}", s - 1),
    }
}

/// A failed delivery goes on the retry schedule; one worker at a time takes it; given up, it is
/// listed, and redelivering puts it back, due now, its attempts counted afresh.
#[tokio::test]
async fn a_failed_delivery_is_retried_given_up_listed_and_redelivered() {
    let (_r, l) = ledger("webhook-books").await;
    let attempt = |attempts: u32, error: &'static str| WebhookAttempt {
        event_id: "evt_1",
        out_trade_no: "RF1",
        merchant: "shop",
        body: b"{\"id\":\"evt_1\"}",
        attempts,
        error,
    };
    l.schedule_webhook_retry(&attempt(1, "HTTP 500"), l.now_ms() + 60_000).await.unwrap();
    assert!(l.due_webhooks(l.shard_of("shop"), 10).await.unwrap().is_empty(), "not due yet");
    l.postpone_webhook(l.shard_of("shop"), "evt_1", l.now_ms() - 1).await.unwrap();
    assert_eq!(l.due_webhooks(l.shard_of("shop"), 10).await.unwrap(), ["evt_1"]);
    let hold = l.now_ms() + 10_000;
    let due = l.take_webhook(l.shard_of("shop"), "evt_1", hold).await.unwrap().unwrap();
    assert_eq!((due.merchant.as_str(), due.out_trade_no.as_str(), due.attempts), ("shop", "RF1", 1));
    assert_eq!(due.body, b"{\"id\":\"evt_1\"}");
    assert!(l.take_webhook(l.shard_of("shop"), "evt_1", hold).await.unwrap().is_none(), "held: not taken twice");
    // A second worker that listed it due a moment before, and holds it for longer, takes nothing:
    // only a delivery still due is taken, so one retry is never sent by two workers.
    assert!(
        l.take_webhook(l.shard_of("shop"), "evt_1", hold + 5_000).await.unwrap().is_none(),
        "a later hold does not take it again"
    );
    assert!(l.due_webhooks(l.shard_of("shop"), 10).await.unwrap().is_empty());

    l.give_up_webhook(&attempt(2, "timeout")).await.unwrap();
    let failed = l.failed_webhooks(10).await.unwrap();
    assert_eq!(failed.len(), 1);
    let f = &failed[0];
    assert_eq!(
        (f.event_id.as_str(), f.merchant.as_str(), f.attempts, f.last_error.as_str()),
        ("evt_1", "shop", 2, "timeout")
    );
    assert!(l.take_webhook(l.shard_of("shop"), "evt_1", hold).await.unwrap().is_none(), "off the retry schedule");
    assert_eq!(l.stats().await.unwrap().webhooks_failed, 1);

    assert_eq!(l.redeliver_webhooks(&["evt_unknown".into()], "ann", "receiver fixed").await.unwrap(), 0);
    assert_eq!(l.redeliver_webhooks(&[], "ann", "receiver fixed").await.unwrap(), 1);
    let audit = l.audit("0", 10).await.unwrap();
    let r: Vec<_> = audit.iter().filter(|a| a.action == "redeliver").collect();
    assert_eq!(r.len(), 1, "audited where one was moved: {audit:?}");
    assert_eq!(
        (r[0].who.as_str(), r[0].why.as_str(), r[0].outcome.as_str()),
        ("ann", "receiver fixed", "ok: 1 deliveries")
    );
    assert!(l.failed_webhooks(10).await.unwrap().is_empty());
    assert_eq!(l.due_webhooks(l.shard_of("shop"), 10).await.unwrap(), ["evt_1"]);
    assert_eq!(l.take_webhook(l.shard_of("shop"), "evt_1", hold).await.unwrap().unwrap().attempts, 0, "counted afresh");
    l.webhook_delivered(l.shard_of("shop"), "evt_1").await.unwrap();
    let stats = l.stats().await.unwrap();
    assert_eq!((stats.webhooks_failed, stats.webhooks_retrying), (0, 0));
    assert!(l.take_webhook(l.shard_of("shop"), "evt_1", hold + 1).await.unwrap().is_none(), "gone");
}
