//! Row 10: what a refund costs in Redis memory at each stage of its life, from `used_memory`
//! before and after (one Redis of its own, nothing else in it): queued (a fresh refund, see
//! `store::fresh`: its record, queued-index entry, outcome-stream entry and id on the ready list;
//! its payment, created-index entry and timeline come with its claim); final with its three
//! outcome-stream entries; final once the outcome stream is trimmed (what `events_retention`
//! leaves for the rest of `retention`); succeeded and archived early (`summary_after`: its summary,
//! its summaries-index entry, its tombstone and its payment's, for the rest of `retention`); and
//! archived (its tombstone and its payment's). Also how
//! many records left Redis' compact hash encoding (one long text does it). Memory, unlike time,
//! does not depend on what else runs on the machine: one run is enough.

use std::time::{Duration, Instant};

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
    /// Succeeded and archived early: what stays of it until the retention.
    pub summarised: f64,
    /// The same for a cancelled refund (an operator's reason of some 40 bytes kept), and for a
    /// failed one (QFPay's refusal and its wording kept).
    pub summarised_cancelled: f64,
    pub summarised_failed: f64,
    pub tombstone: f64,
    /// Refunds archived and removed per second by one worker process's retention, to the file
    /// sink.
    pub archive_rate: f64,
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

/// Waits (up to a minute) until Redis has shrunk its keyspace's hash table to the keys it holds
/// (it keeps it at least a tenth full): it does so in its cron, a step at a time, and not while
/// an AOF rewrite runs. Settled: the same size for two seconds, with no child process.
async fn settle_keyspace(con: &mut redis::aio::MultiplexedConnection) -> anyhow::Result<()> {
    let field = |text: &str, name: &str| -> u64 {
        text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':')?.trim().parse().ok()).unwrap_or(0)
    };
    let (mut last, mut same) = (None, 0);
    for _ in 0..120 {
        let info: String = redis::cmd("INFO").arg("persistence").query_async(con).await?;
        let stats: Vec<redis::Value> = redis::cmd("MEMORY").arg("STATS").query_async(con).await?;
        let mut table = None;
        for pair in stats.chunks(2) {
            if let [redis::Value::BulkString(k), redis::Value::Array(db)] = pair
                && k.as_slice() == b"db.0"
            {
                for p in db.chunks(2) {
                    if let [redis::Value::BulkString(k), redis::Value::Int(v)] = p
                        && k.as_slice() == b"overhead.hashtable.main"
                    {
                        table = Some(*v);
                    }
                }
            }
        }
        let child = field(&info, "aof_rewrite_in_progress") + field(&info, "rdb_bgsave_in_progress");
        same = if child == 0 && table.is_some() && table == last { same + 1 } else { 0 };
        if same >= 4 {
            return Ok(());
        }
        last = table;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    anyhow::bail!("row 10: Redis did not settle its keyspace's hash table within a minute")
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

    // Archived early as a worker's retention does it (the file sink, one process): succeeded
    // refunds past `summary_after` (here at once) leave a summary and their tombstones.
    let archive = format!("file://{}", dir.join("mem-archive").display());
    let sink = archive::Sink::from_setting(&archive)?;
    let early = worker::retention::Retention {
        archive: Some(archive.clone()),
        summary_after: Some(Duration::ZERO),
        ..Default::default()
    };
    let shards: Vec<usize> = (0..l.shard_count()).collect();
    let t = Instant::now();
    let (archived, removed) =
        worker::retention::prune_once(&l, &shards, &sink, &early, "bench").await.map_err(anyhow::Error::msg)?;
    let archive_rate = removed as f64 / t.elapsed().as_secs_f64();
    anyhow::ensure!(archived == N as u64 && removed == N as u64, "row 10: archived {archived}, removed {removed}");
    settle_keyspace(&mut con).await?;
    let with_summaries = used(&l, true).await?;
    // At the retention (here at once) the summaries go; the tombstones stay.
    let cfg = worker::retention::Retention { retention: Duration::ZERO, archive: Some(archive), ..Default::default() };
    worker::retention::prune_once(&l, &shards, &sink, &cfg, "bench").await.map_err(anyhow::Error::msg)?;
    let mut left = 0;
    for shard in 0..l.shard_count() {
        left += l.summary_count(shard).await?;
    }
    anyhow::ensure!(left == 0, "row 10: {left} summaries left past the retention");
    // What the summaries and their index entries hold is what their removal frees (as for the
    // tombstones below: not against the row's start, which the run itself has grown).
    settle_keyspace(&mut con).await?;
    let summaries_held = (with_summaries - used(&l, true).await?) / n;
    // What the tombstones hold is what Redis frees when the keyspace goes (nothing else is in
    // this Redis), once its hash table, sized for the refunds just removed, has shrunk: measured
    // so, rather than against the row's start, because a run of 20 000 refunds leaves Redis
    // itself larger (client and script buffers), which is no refund's.
    let mut tombstones = 0;
    for shard in 0..l.shard_count() {
        tombstones += l.tombstone_count(shard).await?;
    }
    settle_keyspace(&mut con).await?;
    let held = used(&l, true).await?;
    let _: () = redis::cmd("FLUSHALL").arg("SYNC").query_async(&mut con).await?;
    let tombstone = (held - used(&l, true).await?) / n;
    let each = tombstone * n / (tombstones.max(1) as f64);
    let summarised = summaries_held + tombstone;
    let summarised_cancelled = final_summarised(&bed.redis_url, dir, &mut con, ledger::State::Cancelled).await?;
    let summarised_failed = final_summarised(&bed.redis_url, dir, &mut con, ledger::State::Failed).await?;
    let m = Memory {
        queued,
        final_with_events,
        final_retained,
        summarised,
        summarised_cancelled,
        summarised_failed,
        tombstone,
        archive_rate,
        sampled,
        large,
    };
    log(
        format!(
            "10. Redis bytes per refund ({N} refunds, one payment each): queued / final with its outcome entries / final after events_retention / archived (its tombstone and its payment's)"
        ),
        format!("{:.0} / {:.0} / {:.0} / {:.0}", m.queued, m.final_with_events, m.final_retained, m.tombstone),
    );
    log(
        "10. Redis bytes per succeeded refund archived early (summary_after): its summary and summaries-index entry, its tombstone and its payment's".into(),
        format!("{:.0}", m.summarised),
    );
    log(
        "10. Redis bytes per cancelled refund archived early (an operator's reason of 40 bytes): its summary and summaries-index entry, its tombstone and its payment's".into(),
        format!("{:.0}", m.summarised_cancelled),
    );
    log(
        "10. Redis bytes per failed refund archived early (QFPay's refusal, 1126, worded in 50 bytes): its summary and summaries-index entry, its tombstone and its payment's".into(),
        format!("{:.0}", m.summarised_failed),
    );
    log(
        "10. archiving rate: one worker process's retention to the file sink (refunds/s)".into(),
        format!("{archive_rate:.0}"),
    );
    log(
        format!("10. Redis bytes per tombstone ({tombstones}: a refund's or a payment's, compact form)"),
        format!("{each:.0}"),
    );
    log("10. records out of Redis' compact hash encoding, of those sampled".into(), format!("{large} of {sampled}"));
    Ok(m)
}

/// What a refund archived early in final state `state` (cancelled by an operator with a reason,
/// or failed on QFPay's refusal) holds — its summary, its summaries-index entry, its tombstone
/// and its payment's — measured as for succeeded ones, on a ledger of its own in the same
/// (emptied) Redis.
async fn final_summarised(
    url: &str,
    dir: &std::path::Path,
    con: &mut redis::aio::MultiplexedConnection,
    state: ledger::State,
) -> anyhow::Result<f64> {
    const M: usize = 2_000;
    let l = qfrefund_e2e::ledger(url, &format!("bench-mem-{state}")).await;
    for chunk in e2e::refunds("FIN", M).chunks(1_000) {
        for r in l.enqueue_batch(chunk.to_vec()).await {
            r?;
        }
    }
    let p = ledger::Policy::default();
    // QFPay's refusal, as it words one (a risk limit).
    let refused = ledger::SubmitResult::Answer(qfpay::RefundResponse {
        respcd: Some("1126".into()),
        resperr: Some("交易受限，请联系客服 / transaction limited".into()),
        ..Default::default()
    });
    for i in 1..=M {
        let otn = format!("FIN-{i}");
        if state == ledger::State::Cancelled {
            let done = l.operate("default", &otn, ledger::Operation::Cancel, "ops", "customer kept the goods").await?;
            anyhow::ensure!(done == Ok(state), "row 10: cancelling {otn}: {done:?}");
            continue;
        }
        let rec = l.get("default", &otn).await?.ok_or_else(|| anyhow::anyhow!("row 10: {otn} missing"))?;
        let ledger::Claim::Submit { fence, record, .. } =
            l.claim(&(&rec).into(), &ledger::ClaimOptions::new("bench", &p, "2026-12-02 10:00:00")).await?
        else {
            anyhow::bail!("row 10: {otn} not claimed");
        };
        let d = ledger::machine::after_submit(&record, &refused, &p, l.now_ms(), 0.5);
        anyhow::ensure!(l.transition(&record, ledger::State::Submitting, fence, &d, &otn).await?, "row 10: {otn}");
    }
    let archive = format!("file://{}", dir.join(format!("mem-archive-{state}")).display());
    let sink = archive::Sink::from_setting(&archive)?;
    let shards: Vec<usize> = (0..l.shard_count()).collect();
    let early = worker::retention::Retention {
        archive: Some(archive.clone()),
        summary_after: Some(Duration::ZERO),
        ..Default::default()
    };
    let (archived, _) =
        worker::retention::prune_once(&l, &shards, &sink, &early, "bench").await.map_err(anyhow::Error::msg)?;
    anyhow::ensure!(archived == M as u64, "row 10: archived {archived} {state} refunds of {M}");
    // Their outcome-stream entries go with events_retention, the cancels' audit entries are the
    // operators' (as for succeeded refunds above, neither is counted).
    for shard in 0..l.shard_count() {
        let keys = l.shard_keys(shard);
        let _: () = redis::pipe().del(keys.events()).del(keys.audit()).query_async(con).await?;
    }
    settle_keyspace(con).await?;
    let with = used(&l, true).await?;
    let _: () = redis::cmd("FLUSHALL").arg("SYNC").query_async(con).await?;
    let empty = used(&l, true).await?;
    Ok((with - empty) / M as f64)
}
