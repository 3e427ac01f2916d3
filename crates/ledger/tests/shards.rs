//! Merchant-scoped refunds and a ledger in shards: the same out_trade_no under two merchants is
//! two refunds, a ledger written before merchant scoping reads on, every read that spans
//! merchants merges the shards, and a process whose placement disagrees with the ledger's is
//! refused before it can look for a refund in the wrong shard.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, HashSet};

use qfrefund_ledger::refund::placement::Placement;
use qfrefund_ledger::{Claim, ClaimOptions, Enqueued, Ledger, LedgerConfig, LedgerError, NewRefund, Operation, State};
use redis::AsyncCommands;
use testkit::{TestRedis, raw_connection, unique_namespace};

use common::{answer, claimed, ledger, ledger_with, policy};

fn of(merchant: &str, syssn: &str, otn: &str, txamt: u64) -> NewRefund {
    NewRefund { merchant: Some(merchant.into()), ..NewRefund::new(syssn, otn, txamt) }
}

#[tokio::test]
async fn the_same_out_trade_no_under_two_merchants_is_two_refunds() {
    let (_r, l) = ledger("scoped").await;
    let a = l.enqueue(NewRefund::new("100", "RF1", 10)).await.unwrap();
    let b = l.enqueue(of("shop2", "200", "RF1", 20)).await.unwrap();
    assert!(matches!(a, Enqueued::Created(_)) && matches!(b, Enqueued::Created(_)), "{a:?} {b:?}");
    assert_eq!(l.get("default", "RF1").await.unwrap().unwrap().txamt, 10);
    assert_eq!(l.get("shop2", "RF1").await.unwrap().unwrap().txamt, 20);
    assert!(l.get("shop3", "RF1").await.unwrap().is_none(), "nobody else's");
    // Within one merchant the rules are as they were: the same request is a duplicate, another
    // one a conflict, and neither touches the other merchant's refund.
    assert!(matches!(l.enqueue(of("shop2", "200", "RF1", 20)).await.unwrap(), Enqueued::Duplicate(_)));
    assert!(matches!(l.enqueue(of("shop2", "200", "RF1", 21)).await, Err(LedgerError::Conflict { .. })));
    assert!(matches!(l.enqueue(NewRefund::new("100", "RF1", 10)).await.unwrap(), Enqueued::Duplicate(_)));
    // Operator actions, events and listings keep them apart too.
    let cancelled = l.operate("shop2", "RF1", Operation::Cancel, "ops", "customer withdrew").await.unwrap();
    assert_eq!(cancelled, Ok(State::Cancelled));
    assert_eq!(l.get("default", "RF1").await.unwrap().unwrap().state, State::Queued);
    let events = l.events("0", 100).await.unwrap();
    let merchants: HashSet<_> = events.iter().filter(|e| e.out_trade_no == "RF1").map(|e| e.merchant.clone()).collect();
    assert_eq!(merchants, HashSet::from(["default".to_owned(), "shop2".to_owned()]));
    let audit = l.audit("0", 10).await.unwrap();
    assert_eq!((audit[0].merchant.as_str(), audit[0].out_trade_no.as_str()), ("shop2", "RF1"));
}

/// A ledger written before refunds were merchant-scoped kept every merchant's refunds under the
/// out_trade_no alone: those records are found, recognised and processed where they are.
#[tokio::test]
async fn a_ledger_from_before_merchant_scoping_reads_on() {
    let (redis, l) = ledger_with("legacy", 1).await;
    l.enqueue(of("shop2", "300", "RF9", 30)).await.unwrap();
    // Move it to the old layout: the record under the bare out_trade_no, every index naming it so.
    common::move_to_bare_id(&redis.url(), &l, "shop2", "300", "RF9").await;
    let k = l.keys_for("shop2").clone();
    let mut raw = raw_connection(&redis.url()).await;

    let rec = l.get("shop2", "RF9").await.unwrap().expect("found under the old key");
    assert_eq!((rec.id.as_str(), rec.txamt), ("RF9", 30));
    assert!(l.get("default", "RF9").await.unwrap().is_none(), "it is shop2's, not the default merchant's");
    assert!(matches!(l.enqueue(of("shop2", "300", "RF9", 30)).await.unwrap(), Enqueued::Duplicate(_)));
    assert!(matches!(l.enqueue(of("shop2", "300", "RF9", 31)).await, Err(LedgerError::Conflict { .. })));
    let exists: bool = raw.exists(k.record("shop2:RF9")).await.unwrap();
    assert!(!exists, "no second record was made");
    // A worker claims and finishes it where it is.
    let p = policy(5_000);
    let o = ClaimOptions::new("w1", &p, "2026-12-02 10:00:00");
    let fetched = l.claim_due(0, 10, &o).await.unwrap();
    assert_eq!(fetched.claims.len(), 1);
    let (fence, rec) = claimed(fetched.claims.into_iter().next().unwrap().claim);
    let d = qfrefund_ledger::machine::after_submit(&rec, &answer("0000"), &p, l.now_ms(), 0.5);
    assert!(l.transition(&rec, State::Submitting, fence, &d, "op-1").await.unwrap());
    assert_eq!(l.get("shop2", "RF9").await.unwrap().unwrap().state, State::Succeeded);
    let committed: u64 = raw.hget(k.payment("300"), "committed").await.unwrap();
    assert_eq!(committed, 30, "its payment's guard counts it");
}

#[tokio::test]
async fn shards_spread_merchants_and_every_read_merges_them() {
    let (redis, l) = ledger_with("spread", 4).await;
    let merchants: Vec<String> = (0..8).map(|i| format!("m{i}")).collect();
    for (i, m) in merchants.iter().enumerate() {
        l.enqueue(of(m, &format!("{}", 400 + i), "RF", 1)).await.unwrap();
    }
    let used: HashSet<usize> = merchants.iter().map(|m| l.shard_of(m)).collect();
    assert!(used.len() >= 2, "8 merchants over 4 shards use more than one: {used:?}");
    // Each refund's keys carry its shard's tag, and nothing else's.
    let mut raw = raw_connection(&redis.url()).await;
    for m in &merchants {
        let key = l.keys_for(m).record(&format!("{m}:RF"));
        assert!(key.contains(&format!("-{}}}", l.shard_of(m))), "{key}");
        let exists: bool = raw.exists(&key).await.unwrap();
        assert!(exists, "{key}");
    }
    let counts = l.counts().await.unwrap();
    assert_eq!(counts.iter().find(|(s, _)| *s == State::Queued).unwrap().1, 8);
    assert_eq!(l.stats().await.unwrap().due_total, 8);
    assert_eq!(l.due_len().await.unwrap(), 8);
    assert_eq!(l.events("0", 100).await.unwrap().len(), 8, "every shard's outcome stream");
    // Read 3 at a time: entries of several shards may share an id, and a page never splits them,
    // so paging by the last id misses none and repeats none.
    let (mut after, mut read) = ("0".to_owned(), Vec::new());
    loop {
        let page = l.events(&after, 3).await.unwrap();
        let Some(last) = page.last() else { break };
        assert!(page.len() >= 3 || read.len() + page.len() == 8, "{page:?}");
        after = last.id.clone();
        read.extend(page.into_iter().map(|e| e.merchant));
    }
    read.sort();
    assert_eq!(read, merchants);
    // Pages over every shard: each refund once, in the order they were queued.
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let (items, next) = l.page(State::Queued, cursor.as_ref(), 3).await.unwrap();
        seen.extend(items.into_iter().map(|r| r.merchant));
        match next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, merchants);
    assert_eq!(l.list(State::Queued, 2, 3).await.unwrap().len(), 3);
    // A fetch works inside one shard.
    let p = policy(5_000);
    let o = ClaimOptions::new("w1", &p, "2026-12-02 10:00:00");
    for shard in 0..4 {
        let got = l.claim_due(shard, 100, &o).await.unwrap();
        assert!(got.claims.iter().all(|c| l.shard_of(&c.target.merchant) == shard), "{got:?}");
        assert_eq!(got.claims.len(), merchants.iter().filter(|m| l.shard_of(m) == shard).count());
        assert!(got.claims.iter().all(|c| matches!(c.claim, Claim::Submit { .. })));
    }
}

async fn connect(url: &str, ns: &str, shards: usize, pins: &[(&str, usize)]) -> Result<Ledger, LedgerError> {
    let pinned: BTreeMap<String, usize> = pins.iter().map(|(m, s)| ((*m).to_owned(), *s)).collect();
    let config = LedgerConfig {
        namespace: ns.into(),
        placement: Placement::new(shards, pinned).unwrap(),
        ..LedgerConfig::default()
    };
    Ledger::connect(url, config).await
}

#[tokio::test]
async fn a_process_whose_placement_disagrees_with_the_ledger_is_refused() {
    let redis = TestRedis::start().unwrap();
    let ns = unique_namespace("layout");
    let l = connect(&redis.url(), &ns, 4, &[("big", 3)]).await.unwrap();
    l.enqueue(of("shop", "1", "RF1", 1)).await.unwrap();
    let home = l.shard_of("shop");
    let refused = |r: Result<Ledger, LedgerError>| match r {
        Err(LedgerError::Layout(why)) => why,
        other => panic!("expected a layout refusal, got {other:?}"),
    };
    let why = refused(connect(&redis.url(), &ns, 2, &[("big", 1)]).await);
    assert!(why.contains("4 shard(s)") && why.contains("QFREFUND_SHARDS=4"), "{why}");
    let why = refused(connect(&redis.url(), &ns, 4, &[("big", 3), ("shop", (home + 1) % 4)]).await);
    assert!(why.contains("\"shop\"") && why.contains(&format!("shard {home}")), "{why}");
    let why = refused(connect(&redis.url(), &ns, 4, &[]).await);
    assert!(why.contains("\"big\"") && why.contains("big=3"), "the ledger remembers the pin: {why}");
    // The same placement, and a new pin for a merchant with no refunds yet, are fine — and a
    // process still running with the placement from before the pin can no longer enqueue for
    // that merchant where its name would put it: one merchant never has refunds in two shards.
    let pinned = connect(&redis.url(), &ns, 4, &[("big", 3), ("new", 0)]).await.unwrap();
    assert_ne!(l.shard_of("new"), 0, "the test needs a merchant whose name places it off shard 0");
    match l.enqueue(of("new", "9", "RF9", 1)).await {
        Err(LedgerError::Layout(why)) => assert!(why.contains("\"new\"") && why.contains("out of date"), "{why}"),
        other => panic!("a stale placement must be refused, got {other:?}"),
    }
    assert!(matches!(pinned.enqueue(of("new", "9", "RF9", 1)).await.unwrap(), Enqueued::Created(_)));
    assert_eq!(pinned.get("new", "RF9").await.unwrap().unwrap().state, State::Queued);
    // A ledger of one shard from before shards existed keeps its keys, and stays one shard.
    let old = unique_namespace("layout-old");
    connect(&redis.url(), &old, 1, &[]).await.unwrap().enqueue(NewRefund::new("1", "RF1", 1)).await.unwrap();
    let mut raw = raw_connection(&redis.url()).await;
    let _: () = raw.del(format!("{old}:{{default}}:layout")).await.unwrap();
    let why = refused(connect(&redis.url(), &old, 4, &[]).await);
    assert!(why.contains("1 shard(s)"), "{why}");
    let again = connect(&redis.url(), &old, 1, &[]).await.unwrap();
    assert!(again.get("default", "RF1").await.unwrap().is_some());
}

/// A ledger of the version before merchant scoping keeps its ids (every merchant's refund under
/// the bare out_trade_no) until an operator scopes it, so that processes of both versions, side
/// by side during the upgrade, name every refund alike and never make two of one.
#[tokio::test]
async fn an_upgraded_ledger_shares_ids_with_the_old_version_until_it_is_scoped() {
    let redis = TestRedis::start().unwrap();
    let ns = unique_namespace("legacy-ids");
    connect(&redis.url(), &ns, 1, &[]).await.unwrap().enqueue(NewRefund::new("1", "RF0", 1)).await.unwrap();
    // As the previous version left it: refunds, and no layout.
    let mut raw = raw_connection(&redis.url()).await;
    let _: () = raw.del(format!("{ns}:{{default}}:layout")).await.unwrap();
    let l = connect(&redis.url(), &ns, 1, &[]).await.unwrap();
    l.enqueue(of("shop2", "2", "RF1", 5)).await.unwrap();
    let k = l.keys_for("shop2").clone();
    let bare: bool = raw.exists(k.record("RF1")).await.unwrap();
    assert!(bare, "under the bare out_trade_no, as the previous version writes it");
    assert!(matches!(l.enqueue(of("shop3", "3", "RF1", 5)).await, Err(LedgerError::Conflict { .. })));
    assert!(l.scope_merchants().await.unwrap());
    assert!(!l.scope_merchants().await.unwrap(), "once");
    // The running process sees it at once (the enqueue script reads the layout).
    assert!(matches!(l.enqueue(of("shop3", "3", "RF1", 5)).await.unwrap(), Enqueued::Created(_)));
    assert!(matches!(l.enqueue(of("shop2", "2", "RF1", 5)).await.unwrap(), Enqueued::Duplicate(_)));
    assert_eq!(l.get("shop2", "RF1").await.unwrap().unwrap().id, "RF1");
    assert_eq!(l.get("shop3", "RF1").await.unwrap().unwrap().id, "shop3:RF1");
}

/// A process that only reads never records its shard count in a ledger that has none yet: a
/// `qfrefund stats` with the wrong configuration must not lock the workers out.
#[tokio::test]
async fn a_reader_leaves_the_first_word_on_the_layout_to_the_writers() {
    let redis = TestRedis::start().unwrap();
    let ns = unique_namespace("reader");
    let reader = LedgerConfig { namespace: ns.clone(), record_layout: false, ..LedgerConfig::default().with_shards(4) };
    let r = Ledger::connect(&redis.url(), reader.clone()).await.unwrap();
    assert_eq!(r.stats().await.unwrap().due_total, 0);
    let mut raw = raw_connection(&redis.url()).await;
    let layout: bool = raw.exists(format!("{ns}:{{default}}:layout")).await.unwrap();
    assert!(!layout, "nothing recorded by a reader");
    let w = connect(&redis.url(), &ns, 2, &[]).await.unwrap();
    w.enqueue(NewRefund::new("1", "RF1", 1)).await.unwrap();
    assert!(matches!(Ledger::connect(&redis.url(), reader).await, Err(LedgerError::Layout(_))), "now it is checked");
}
