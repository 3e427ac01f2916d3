//! Searching refunds: every filter, both orders, cursor pages that neither skip nor repeat
//! across shards and across the index of succeeded refunds archived early.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{answer, claimed, ledger_with, policy};
use qfrefund_ledger::machine::after_submit;
use qfrefund_ledger::store::search::Search;
use qfrefund_ledger::{ClaimOptions, Ledger, NewRefund, PageCursor, State};

fn refund(merchant: &str, i: u64) -> NewRefund {
    NewRefund {
        merchant: Some(merchant.into()),
        ..NewRefund::new(&format!("P{}", i % 7), &format!("RF{i:03}"), 100 + i)
    }
}

/// Every page of `q`, `limit` at a time: the out_trade_nos as found (merchant/otn).
async fn all_pages(l: &Ledger, q: &Search, limit: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut cursor: Option<PageCursor> = None;
    for _ in 0..1_000 {
        let page = l.search(q, cursor.as_ref(), limit).await.unwrap();
        assert!(page.items.len() <= limit);
        out.extend(page.items.iter().map(|r| format!("{}/{}", r.merchant, r.out_trade_no)));
        match page.next {
            Some(c) => cursor = Some(c),
            None => return out,
        }
    }
    panic!("no end to the pages");
}

#[tokio::test]
async fn search_filters_orders_and_pages_across_shards() {
    let (_redis, l) = ledger_with("search", 4).await;
    let merchants = ["shop-a", "shop-b", "shop-c"];
    for i in 0..60u64 {
        l.enqueue(refund(merchants[(i % 3) as usize], i)).await.unwrap();
    }
    // Ten of shop-a's succeed (QFPay answering 0000); five of those are archived early.
    let p = policy(5_000);
    for i in (0..30u64).step_by(3) {
        let rec = l.get("shop-a", &format!("RF{i:03}")).await.unwrap().unwrap();
        let (fence, rec) = claimed(l.claim(&(&rec).into(), &ClaimOptions::new("w", &p, "t")).await.unwrap());
        let d = after_submit(&rec, &answer("0000"), &p, 0, 0.5);
        assert!(l.transition(&rec, State::Submitting, fence, &d, "op").await.unwrap());
    }
    let shard = l.shard_of("shop-a");
    let mut batch = l.summarising(shard, Duration::ZERO, 100).await.unwrap();
    batch.truncate(5);
    assert!(l.take_archiver(shard, "t", Duration::from_secs(10)).await.unwrap());
    assert_eq!(l.summarise_archived("t", &batch).await.unwrap().removed, 5);

    let everything = all_pages(&l, &Search::default(), 7).await;
    assert_eq!(everything.len(), 60, "{everything:?}");
    assert_eq!(everything.iter().collect::<BTreeSet<_>>().len(), 60, "none twice");
    let newest = all_pages(&l, &Search { newest_first: true, ..Search::default() }, 9).await;
    assert_eq!(newest.iter().rev().collect::<Vec<_>>(), everything.iter().collect::<Vec<_>>(), "the same, reversed");

    let succeeded = Search { state: Some(State::Succeeded), ..Search::default() };
    let found = all_pages(&l, &succeeded, 3).await;
    assert_eq!(found.len(), 10, "whole and archived early: {found:?}");
    assert!(found.iter().all(|f| f.starts_with("shop-a/")));
    let found = all_pages(&l, &Search { newest_first: true, ..succeeded.clone() }, 4).await;
    assert_eq!(found.len(), 10);

    let b = Search { merchant: Some("shop-b".into()), min_txamt: Some(120), max_txamt: Some(140), ..Search::default() };
    let found = all_pages(&l, &b, 2).await;
    let want: Vec<String> = (20..=40).filter(|i| i % 3 == 1).map(|i| format!("shop-b/RF{i:03}")).collect();
    assert_eq!(found, want);

    let respcd = Search { respcd: Some("0000".into()), merchant: Some("shop-a".into()), ..Search::default() };
    assert_eq!(all_pages(&l, &respcd, 50).await.len(), 10);
    let payment = Search { syssn: Some("P3".into()), ..Search::default() };
    let found = all_pages(&l, &payment, 2).await;
    assert!(!found.is_empty() && found.len() <= 9, "{found:?}");
    let all = l.search(&Search::default(), None, 1000).await.unwrap();
    let times: Vec<i64> = all.items.iter().map(|r| r.created_at).collect();
    let (lo, hi) = (times[10], times[20]);
    let window = Search { created_from: Some(lo), created_to: Some(hi), ..Search::default() };
    let found = l.search(&window, None, 1000).await.unwrap();
    assert!(found.items.iter().all(|r| (lo..=hi).contains(&r.created_at)));
    assert_eq!(found.items.len(), times.iter().filter(|t| (lo..=hi).contains(*t)).count());
    assert!(
        l.search(&Search { state: Some(State::Failed), ..Search::default() }, None, 10).await.unwrap().items.is_empty()
    );
}

#[tokio::test]
async fn a_search_over_many_refunds_merges_the_shards_in_order_and_stops_at_its_scan_cap() {
    let (_redis, l) = ledger_with("search-many", 4).await;
    let merchants = ["m-1", "m-2", "m-3", "m-4", "m-5"];
    let all: Vec<NewRefund> = (0..6_000u64).map(|i| refund(merchants[(i % 5) as usize], i)).collect();
    for chunk in all.chunks(1_000) {
        for r in l.enqueue_batch(chunk.to_vec()).await {
            r.unwrap();
        }
    }
    // Every page in order (by creation, then id), none twice, none skipped.
    let mut seen = Vec::new();
    let mut cursor: Option<PageCursor> = None;
    loop {
        let page = l.search(&Search::default(), cursor.as_ref(), 700).await.unwrap();
        seen.extend(page.items.iter().map(|r| (r.created_at, r.id.clone())));
        match page.next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen.len(), 6_000);
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "in order, none twice");
    // Only the newest matches: the first call stops at its scan cap with a cursor, short.
    let q = Search { min_txamt: Some(100 + 5_999), ..Search::default() };
    let first = l.search(&q, None, 10).await.unwrap();
    assert!(first.items.is_empty() && first.next.is_some(), "{:?}", (first.items.len(), first.scanned));
    assert!(first.scanned >= qfrefund_ledger::store::search::SCAN_CAP);
    let second = l.search(&q, first.next.as_ref(), 10).await.unwrap();
    assert_eq!(second.items.iter().map(|r| r.out_trade_no.as_str()).collect::<Vec<_>>(), ["RF5999"]);
    assert_eq!(second.next, None);
}
