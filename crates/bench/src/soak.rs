//! Row 11, the soak: a steady stream of refunds (`BENCH_SOAK_RATE`, 500/s) for `BENCH_SOAK_S`
//! (300 s) through two workers that archive final refunds after a 60 s retention (and trim the
//! outcome stream after 60 s), into a file archive. Redis' `used_memory` is sampled every 10 s:
//! after the second minute it should stay flat but for the tombstones, which by design stay for
//! `idempotency_retention` (days: a soak cannot see them swept) — their share is shown apart.
//! At the end, once the last refunds are archived: every refund QFPay recorded is in the
//! archive or in Redis, exactly once.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use qfpay_sim::args::generated_syssn;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// What the soak found.
#[derive(Debug, Clone, Copy, Default)]
pub struct Soak {
    /// used_memory after the second minute, less the tombstones: (min, max, mean) bytes.
    pub flat: (f64, f64, f64),
    pub lost: u64,
    pub doubled: u64,
}

/// `per_tombstone`: bytes each tombstone takes (a refund's or a payment's: half of row 10's
/// figure, which counts both).
pub async fn row(
    dir: &std::path::Path,
    per_tombstone: f64,
    log: &mut impl FnMut(String, String),
) -> anyhow::Result<Soak> {
    let rate = env_num("BENCH_SOAK_RATE", 500).max(1);
    let secs = env_num("BENCH_SOAK_S", 300).max(30);
    let total = (rate * secs) as usize;
    let st = crate::Stage::start_in(dir.to_owned(), total).await?;
    let bed = &st.bed;
    let ns = "bench-soak";
    let archive_dir = dir.join("soak-archive");
    let l = qfrefund_e2e::ledger(&bed.redis_url, ns).await;
    let mut env = bed.env(ns, 64);
    env.insert("QFREFUND_ARCHIVE".into(), format!("file://{}", archive_dir.display()));
    env.insert("QFREFUND_RETENTION_S".into(), "60".into());
    env.insert("QFREFUND_EVENTS_RETENTION_S".into(), "60".into());
    let mut workers: Vec<qfrefund_e2e::WorkerProcess> =
        (0..2).map(|i| qfrefund_e2e::WorkerProcess::spawn(&env, dir.join(format!("soak-{i}.log")))).collect();

    // The producer: `rate` refunds a second, in tenths of a second; used_memory every 10 s.
    let started = Instant::now();
    let mut samples: Vec<(f64, f64, u64)> = Vec::new();
    let mut next = 1usize;
    let mut tick = 0u64;
    while next <= total {
        let due = ((started.elapsed().as_secs_f64() * rate as f64) as usize).min(total);
        if due >= next {
            let batch: Vec<ledger::NewRefund> = (next..=due)
                .map(|i| ledger::NewRefund {
                    orig_txamt: Some(100_000),
                    ..ledger::NewRefund::new(&generated_syssn(i as u64), &format!("SOAK-{i}"), 1)
                })
                .collect();
            for r in l.enqueue_batch(batch).await {
                r?;
            }
            next = due + 1;
        }
        if started.elapsed() >= Duration::from_secs(10 * tick) {
            let mut tombstones = 0;
            for shard in 0..l.shard_count() {
                tombstones += l.tombstone_count(shard).await?;
            }
            samples.push((started.elapsed().as_secs_f64(), crate::memory::used(&l, false).await?, tombstones));
            tick += 1;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Every refund final, then archived (retention 60 s after the last).
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let live: u64 = l.counts().await?.iter().map(|(_, n)| n).sum();
        if live == 0 {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "soak: {live} refunds still in Redis 240 s after the last enqueue");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for w in &mut workers {
        w.terminate();
    }
    let mut tombstones_end = 0;
    for shard in 0..l.shard_count() {
        tombstones_end += l.tombstone_count(shard).await?;
    }

    // What the tombstones add (their count × the bytes each, from row 10) is not retained
    // refunds: it grows by design, for idempotency_retention.
    anyhow::ensure!(per_tombstone > 0.0, "row 11 needs row 10's bytes per tombstone");
    let t0 = samples.iter().find(|x| x.0 >= 120.0).map_or(0, |x| x.2);
    let after: Vec<f64> =
        samples.iter().filter(|s| s.0 >= 120.0).map(|s| s.1 - per_tombstone * s.2.saturating_sub(t0) as f64).collect();
    let (min, max) = after.iter().fold((f64::MAX, 0.0f64), |(a, b), v| (a.min(*v), b.max(*v)));
    let mean = after.iter().sum::<f64>() / after.len().max(1) as f64;
    let raw: Vec<f64> = samples.iter().filter(|s| s.0 >= 120.0).map(|s| s.1).collect();
    let (raw_min, raw_max) = raw.iter().fold((f64::MAX, 0.0f64), |(a, b), v| (a.min(*v), b.max(*v)));

    // Nothing lost, nothing twice: QFPay's records against the archive (and Redis, empty by now).
    let mut archived: HashMap<String, u32> = HashMap::new();
    for v in archive::file::FileSink::new(archive_dir.clone()).verify()? {
        if v.file.to_string_lossy().contains("/audit/") {
            continue;
        }
        let out = std::process::Command::new("zstd").args(["-dcq"]).arg(&v.file).output()?;
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let r: serde_json::Value = serde_json::from_str(line)?;
            *archived.entry(r["out_trade_no"].as_str().unwrap_or_default().to_owned()).or_default() += 1;
        }
    }
    let audit = st.sim.audit();
    let recorded =
        audit["by_out_trade_no"].as_object().map(|m| m.keys().cloned().collect::<Vec<_>>()).unwrap_or_default();
    // Every refund enqueued must be archived (Redis is empty by now), whatever QFPay recorded.
    let lost = (1..=total).filter(|i| !archived.contains_key(&format!("SOAK-{i}"))).count() as u64
        + recorded.iter().filter(|otn| !archived.contains_key(*otn)).count() as u64;
    let doubled = archived.values().filter(|n| **n > 1).count() as u64
        + audit["violations"].as_array().map_or(0, |v| v.len() as u64);
    let mib = |b: f64| b / 1_048_576.0;
    log(
        format!(
            "11. soak: {rate} refunds/s for {secs} s, retention 60 s, 2 workers: used_memory after the 2nd minute, \
             min–max (MiB); less the tombstones ({per_tombstone:.0} B each, from row 10): min–max (MiB; ± of mean)"
        ),
        format!(
            "{:.1}–{:.1} ; {:.1}–{:.1} ; ±{:.1}%",
            mib(raw_min),
            mib(raw_max),
            mib(min),
            mib(max),
            100.0 * (max - min) / 2.0 / mean.max(1.0)
        ),
    );
    log(
        "11. soak: refunds QFPay recorded / archived / lost / archived twice or doubled at QFPay / tombstones at the end"
            .into(),
        format!("{} / {} / {lost} / {doubled} / {tombstones_end}", recorded.len(), archived.len()),
    );
    Ok(Soak { flat: (min, max, mean), lost, doubled })
}
