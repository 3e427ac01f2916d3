//! Row 10: what a refund costs in Redis memory at each stage of its life, from `used_memory`
//! before and after (one Redis of its own, nothing else in it): queued (record, payment, due,
//! state and created indexes, its outcome-stream entry and timeline); final with its three
//! outcome-stream entries; final once the outcome stream is trimmed (what `events_retention`
//! leaves for the rest of `retention`); and archived (its tombstone and its payment's). Also how
//! many records left Redis' compact hash encoding (one long text does it). Memory, unlike time,
//! does not depend on what else runs on the machine: one run is enough.

use std::time::{Duration, Instant};

use ledger::refund::tombstone::{date_of_day, day_of};
use redis::AsyncCommands;

use crate::e2e;

/// Refunds measured (each on a payment of its own, so each leaves a payment tombstone too).
const N: usize = 20_000;

/// Bytes per refund at each stage.
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    pub queued: f64,
    pub final_with_events: f64,
    pub final_retained: f64,
    pub tombstone: f64,
    /// Records sampled, and how many of them were not in the compact (listpack) encoding.
    pub sampled: usize,
    pub large: usize,
}

/// Redis' `used_memory` (every primary), as the ledger reads it for `stats`, once lazily freed
/// memory and client buffers have settled when `settle`.
pub(crate) async fn used(l: &ledger::Ledger, settle: bool) -> anyhow::Result<f64> {
    if settle {
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Ok(l.server_infos().await?.iter().map(|(_, i)| i.used_memory as f64).sum())
}

pub async fn row(dir: &std::path::Path, log: &mut impl FnMut(String, String)) -> anyhow::Result<Memory> {
    let st = crate::Stage::start_in(dir.to_owned(), N).await?;
    let bed = &st.bed;
    let ns = "bench-mem";
    let l = qfrefund_e2e::ledger(&bed.redis_url, ns).await;
    let mut con = redis::Client::open(bed.redis_url.as_str())?.get_multiplexed_async_connection().await?;
    let n = N as f64;
    let base = used(&l, true).await?;

    for chunk in e2e::refunds("MEM", N).chunks(5_000) {
        for r in l.enqueue_batch(chunk.to_vec()).await {
            r?;
        }
    }
    let queued = (used(&l, true).await? - base) / n;

    let mut w = bed.workers(ns, 1, 256);
    let t = Instant::now();
    while e2e::succeeded(&l).await < N as u64 {
        anyhow::ensure!(t.elapsed() < Duration::from_secs(300), "row 10: refunds did not settle");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    w[0].terminate();
    let final_with_events = (used(&l, true).await? - base) / n;

    // Sample records' encodings.
    let mut large = 0;
    let sampled = 500;
    for i in 0..sampled {
        let key = l.keys_for("default").record(&format!("MEM-{}", i * (N / sampled) + 1));
        let enc: String =
            redis::cmd("OBJECT").arg("ENCODING").arg(&key).query_async(&mut con).await.unwrap_or_default();
        large += usize::from(enc != "listpack");
    }

    // One final refund's own keys, as Redis counts them.
    let keys = l.keys_for("default").clone();
    let mut usage = Vec::new();
    for key in [
        keys.record("MEM-1"),
        keys.timeline("MEM-1"),
        keys.evidence("MEM-1"),
        keys.payment(&qfpay_sim::args::generated_syssn(1)),
    ] {
        let v: Option<u64> =
            redis::cmd("MEMORY").arg("USAGE").arg(&key).arg("SAMPLES").arg(0).query_async(&mut con).await?;
        usage.push(v.unwrap_or(0).to_string());
    }
    log(
        "10. one final refund's keys (MEMORY USAGE, B): record / timeline / attempts' evidence / payment".into(),
        usage.join(" / "),
    );

    for shard in 0..l.shard_count() {
        let _: u64 = con.xtrim(l.shard_keys(shard).events(), redis::streams::StreamMaxlen::Equals(0)).await?;
    }
    let final_retained = (used(&l, true).await? - base) / n;

    let sink = archive::Sink::from_setting(&format!("file://{}", dir.join("mem-archive").display()))?;
    for shard in 0..l.shard_count() {
        anyhow::ensure!(l.take_archiver(shard, "bench", Duration::from_secs(60)).await?);
        loop {
            let batch = l.retained(shard, Duration::ZERO, 500).await?;
            if batch.is_empty() {
                break;
            }
            let now = l.now_ms();
            let lines = batch.iter().map(|r| archive::ArchivedRefund::of(r, now)).collect();
            sink.write(shard, &date_of_day(day_of(now)), lines).await?;
            l.remove_archived("bench", &batch).await?;
        }
    }
    let tombstone = (used(&l, true).await? - base) / n;
    let m = Memory { queued, final_with_events, final_retained, tombstone, sampled, large };
    log(
        format!(
            "10. Redis bytes per refund ({N} refunds, one payment each): queued / final with its outcome entries / final after events_retention / archived (its tombstone and its payment's)"
        ),
        format!("{:.0} / {:.0} / {:.0} / {:.0}", m.queued, m.final_with_events, m.final_retained, m.tombstone),
    );
    log("10. records out of Redis' compact hash encoding, of those sampled".into(), format!("{large} of {sampled}"));
    Ok(m)
}
