//! Row 9: the ledger split into 1, 2 and 4 shards, each shard on a primary of its own in a local
//! Redis Cluster (AOF everysec), one merchant pinned to each shard, two `qfrefund worker`
//! processes against the cluster. Every run gets a cluster and a simulator of its own, and the
//! shard counts take turns (1, 2, 4, 1, 2, 4, …), so that a burst of load from elsewhere on the
//! machine weighs on each of them alike. Per shard count:
//!
//! - refunds per second end to end as in row 2: from the first enqueue to the last refund final,
//!   the enqueue included, with the workers already up and idle;
//! - Redis main-thread CPU per refund (`used_cpu_user_main_thread + used_cpu_sys_main_thread`,
//!   before and after the run): summed over every primary ÷ every refund, and per shard — its
//!   primary's CPU ÷ its own refunds — for the busiest shard. A shard does no work for another
//!   shard's refunds, so that per-shard cost must not grow with the number of shards;
//! - the busiest shard's commands and script calls per refund: the same work counted, which other
//!   processes on the same cores cannot inflate as they can CPU time.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use ledger::refund::placement::Placement;
use ledger::{Ledger, LedgerConfig, NewRefund};
use qfpay_sim::args::{DEMO_APP_CODE, DEMO_CLIENT_KEY, generated_syssn};
use qfrefund_e2e::WorkerProcess;
use testkit::{Aof, Faults, RedisCluster, SimConfig, SimHandle};

use crate::RedisWork;
use crate::e2e::{Bed, succeeded};
use crate::stats::Figure;

/// Refunds per run, spread evenly over the merchants (one per shard).
const REFUNDS: usize = 5_000;
/// Worker processes per run, and the concurrency of each.
const WORKERS: usize = 2;
const CONCURRENCY: usize = 64;
/// The environment variable the workers read every merchant's client key from.
const KEY_VAR: &str = "BENCH_MERCHANT_KEY";

/// What one run measured.
#[derive(Debug, Clone, Copy)]
struct Sample {
    /// Refunds per second, enqueue → last final.
    rate: f64,
    /// Redis main-thread CPU per refund (µs), every primary's over every refund.
    cpu_all_us: f64,
    /// The most any shard's primary spent per refund of that shard (µs).
    cpu_busiest_us: f64,
    /// The most commands (those inside scripts included) and script calls any shard's primary ran
    /// per refund of that shard: the work itself, which, unlike CPU time, other processes on the
    /// same cores do not inflate.
    commands_busiest: f64,
    scripts_busiest: f64,
}

fn figure(samples: &[Sample], f: impl Fn(&Sample) -> f64) -> Figure {
    Figure { values: samples.iter().map(f).collect() }
}

/// The shard counts row 9 compares.
const SHARD_COUNTS: [usize; 3] = [1, 2, 4];

/// Row 9 for 1, 2 and 4 shards, `runs` runs each, its figures given to `log`. Returns the busiest
/// shard's CPU per refund with 4 shards ÷ with 1 (medians).
pub async fn row(dir: &Path, runs: usize, log: &mut impl FnMut(String, String)) -> anyhow::Result<Option<f64>> {
    let mut samples: Vec<Vec<Sample>> = vec![Vec::with_capacity(runs); SHARD_COUNTS.len()];
    for i in 0..runs {
        for (k, &n) in SHARD_COUNTS.iter().enumerate() {
            samples[k].push(sample(dir, n, &format!("s{n}-{i}")).await?);
        }
    }
    let mut busiest = Vec::new();
    for (&n, m) in SHARD_COUNTS.iter().zip(&samples) {
        log(
            format!("9. {n} shard(s) on {n} cluster primaries, {WORKERS} workers, {REFUNDS} refunds (refunds/s)"),
            figure(m, |s| s.rate).show(0),
        );
        let cpu_busiest = figure(m, |s| s.cpu_busiest_us);
        log(
            format!("9. {n} shard(s): Redis CPU per refund, all primaries / busiest shard (µs)"),
            format!("{} / {}", figure(m, |s| s.cpu_all_us).show(0), cpu_busiest.show(0)),
        );
        log(
            format!("9. {n} shard(s): Redis commands / script calls per refund, busiest shard"),
            format!("{} / {}", figure(m, |s| s.commands_busiest).show(1), figure(m, |s| s.scripts_busiest).show(2)),
        );
        busiest.push((n, cpu_busiest.median()));
    }
    let at = |n: usize| busiest.iter().find(|(s, _)| *s == n).map(|(_, us)| *us);
    let ratio = at(1).zip(at(4)).map(|(one, four)| four / one);
    if let Some(r) = ratio {
        log("9. Redis CPU per refund per shard, 4 shards × 1 shard (must not grow)".into(), format!("{r:.2}×"));
    }
    Ok(ratio)
}

/// The merchant pinned to shard `i`.
fn merchant(i: usize) -> String {
    format!("shop{i}")
}

/// One run, `tag`, with `shards` shards on a cluster of as many primaries and a simulator, both
/// started for it (and stopped after it).
async fn sample(dir: &Path, shards: usize, tag: &str) -> anyhow::Result<Sample> {
    let cluster = RedisCluster::start(shards, Aof::EverySec)?;
    let pins: BTreeMap<String, usize> = (0..shards).map(|i| (merchant(i), i)).collect();
    let placement = Placement::new(shards, pins).map_err(anyhow::Error::msg)?;
    place_shards(&cluster, &placement).await?;
    let per = REFUNDS / shards;
    // One QFPay account per merchant (two names for one account are refused), each owning the
    // payments of its refunds.
    let mut config = SimConfig { faults: Faults::default(), ..SimConfig::demo((per * shards) as u64) };
    config.merchants = (0..shards)
        .map(|i| qfpay_sim::Merchant {
            app_code: app_code(i),
            key: qfpay::ClientKey::new(DEMO_CLIENT_KEY),
            mchid: None,
        })
        .collect();
    for (n, p) in config.payments.iter_mut().enumerate() {
        p.app_code = Some(app_code(n / per));
    }
    let sim = SimHandle::start_local(config).await?;
    let toml = dir.join(format!("{tag}.toml"));
    std::fs::write(&toml, merchants_toml(shards, &sim.url()))?;
    let bed = Bed { redis_url: cluster.url(), sim_url: sim.url(), dir: dir.to_path_buf() };
    Run { bed: &bed, cluster: &cluster, placement: &placement, toml: &toml, per }.once(tag).await
}

/// Puts shard `i` on primary `i`, before any refund is written: the slot of the shard's hash tag
/// moves to that primary when another one owns it.
async fn place_shards(cluster: &RedisCluster, placement: &Placement) -> anyhow::Result<()> {
    let config = LedgerConfig {
        namespace: "bench-shards-probe".into(),
        placement: placement.clone(),
        ..LedgerConfig::default()
    };
    let probe = Ledger::connect(&cluster.url(), config).await?;
    let mut slots = Vec::new();
    for i in 0..placement.shards() {
        let slot = cluster.keyslot(&probe.shard_keys(i).due())?;
        anyhow::ensure!(
            !slots.contains(&slot),
            "shard {i}'s slot {slot} is another shard's too: they cannot have a primary each"
        );
        slots.push(slot);
    }
    drop(probe);
    for (i, slot) in slots.into_iter().enumerate() {
        if cluster.slot_owner(slot)? != i {
            cluster.migrate_slot(slot, i)?;
        }
        anyhow::ensure!(cluster.slot_owner(slot)? == i, "shard {i}'s slot {slot} did not move to primary {i}");
    }
    Ok(())
}

/// Merchant `i`'s QFPay app code in the simulator.
fn app_code(i: usize) -> String {
    format!("{DEMO_APP_CODE}{i}")
}

/// The workers' configuration file: one merchant per shard, each its own QFPay account (sharing
/// the simulator's demo key).
fn merchants_toml(shards: usize, sim_url: &str) -> String {
    (0..shards)
        .map(|i| {
            format!(
                "[merchants.{}]\napp_code = \"{}\"\nclient_key_env = \"{KEY_VAR}\"\nbase_url = \"{sim_url}\"\n",
                merchant(i),
                app_code(i)
            )
        })
        .collect()
}

/// `per` refunds for each merchant, the merchants interleaved; each of a payment of its own (no
/// enquiry first: `orig_txamt` is given).
fn refunds(tag: &str, shards: usize, per: usize) -> Vec<NewRefund> {
    let mut out = Vec::with_capacity(shards * per);
    for j in 0..per {
        for i in 0..shards {
            let payment = (i * per + j + 1) as u64;
            out.push(NewRefund {
                merchant: Some(merchant(i)),
                orig_txamt: Some(100_000),
                ..NewRefund::new(&generated_syssn(payment), &format!("{tag}-m{i}-{j}"), 1)
            });
        }
    }
    out
}

/// What every primary has done so far, in node order.
async fn work_per_node(cluster: &RedisCluster) -> anyhow::Result<Vec<RedisWork>> {
    let mut out = Vec::new();
    for url in cluster.node_urls() {
        out.push(crate::redis_work(&url).await?);
    }
    Ok(out)
}

struct Run<'a> {
    bed: &'a Bed,
    cluster: &'a RedisCluster,
    placement: &'a Placement,
    toml: &'a Path,
    /// Refunds per merchant.
    per: usize,
}

impl Run<'_> {
    /// One run in namespace `bench-<tag>`.
    async fn once(&self, tag: &str) -> anyhow::Result<Sample> {
        let shards = self.placement.shards();
        let ns = format!("bench-{tag}");
        let mut env = self.bed.env(&ns, CONCURRENCY);
        for k in ["QFPAY_APP_CODE", "QFPAY_CLIENT_KEY", "QFPAY_BASE_URL"] {
            env.remove(k);
        }
        let pins: Vec<String> = self.placement.pinned().iter().map(|(m, s)| format!("{m}={s}")).collect();
        env.insert("QFREFUND_CONFIG".into(), self.toml.display().to_string());
        env.insert("QFREFUND_SHARDS".into(), shards.to_string());
        env.insert("QFREFUND_MERCHANT_SHARDS".into(), pins.join(","));
        env.insert(KEY_VAR.into(), DEMO_CLIENT_KEY.into());
        let mut procs: Vec<WorkerProcess> =
            (0..WORKERS).map(|w| WorkerProcess::spawn(&env, self.bed.dir.join(format!("{ns}-{w}.log")))).collect();
        let config =
            LedgerConfig { namespace: ns.clone(), placement: self.placement.clone(), ..LedgerConfig::default() };
        let l = Ledger::connect(&self.bed.redis_url, config).await?;
        tokio::time::sleep(Duration::from_millis(1_500)).await; // workers up and idle
        let n = shards * self.per;
        let before = work_per_node(self.cluster).await?;
        let started = Instant::now();
        for chunk in refunds(tag, shards, self.per).chunks(10_000) {
            for r in l.enqueue_batch(chunk.to_vec()).await {
                r?;
            }
        }
        let deadline = started + Duration::from_secs(300);
        while succeeded(&l).await < n as u64 {
            let gone = procs.iter().any(|p| exited(p.pid()));
            if gone || Instant::now() > deadline {
                let logs: Vec<String> = procs.iter().map(WorkerProcess::output).collect();
                let why = if gone { "a worker exited" } else { "not drained in time" };
                anyhow::bail!("{tag}: {why}; worker logs:\n{}", logs.join("\n---\n"));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let rate = n as f64 / started.elapsed().as_secs_f64();
        let after = work_per_node(self.cluster).await?;
        for p in &mut procs {
            p.terminate();
        }
        // Primary i holds shard i alone (`place_shards`), and shard i holds `per` refunds.
        let per_shard: Vec<RedisWork> = after.iter().zip(&before).map(|(a, b)| (*a - *b).per(self.per)).collect();
        let ms: Vec<String> = per_shard.iter().map(|w| format!("{:.0}", w.cpu_us * self.per as f64 / 1e3)).collect();
        eprintln!("9. {tag}: {rate:.0} refunds/s; Redis main-thread CPU per primary (ms): {}", ms.join(", "));
        let most = |f: fn(&RedisWork) -> f64| per_shard.iter().map(f).fold(0.0, f64::max);
        Ok(Sample {
            rate,
            cpu_all_us: per_shard.iter().map(|w| w.cpu_us).sum::<f64>() * self.per as f64 / n as f64,
            cpu_busiest_us: most(|w| w.cpu_us),
            commands_busiest: most(|w| w.commands),
            scripts_busiest: most(|w| w.scripts),
        })
    }
}

/// Whether process `pid` has exited: gone, or a zombie its parent has not reaped yet.
fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // `pid (comm) state …`: the state follows the last parenthesis.
        Ok(stat) => stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => true,
    }
}
