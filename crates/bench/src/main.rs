//! `make bench`: qfrefund against bare apalis-redis 1.0, in one run on one machine, so every
//! figure can be read as a ratio. Writes `bench/RESULTS.md` and prints it.
//!
//! Knobs: `BENCH_RUNS` (default 3), `BENCH_SIZES` (default `5000,20000,100000`), `BENCH_ONLY`
//! (rows), `BENCH_SOAK_RATE` and `BENCH_SOAK_S` (row 11: 500 refunds/s for 300 s).

mod baseline;
mod e2e;
mod memory;
mod report;
mod scripts;
mod shards;
mod soak;
mod stats;
mod targets;

use std::io::Write as _;
use std::time::{Duration, Instant};

use baseline::Flavour;
use e2e::Bed;
use qfrefund_e2e::{ledger as connect, qfrefund_bin};
use stats::{Figure, percentile};
use testkit::{Faults, RedisServer, SimConfig, SimHandle};

fn env_list(name: &str, default: &str) -> Vec<usize> {
    std::env::var(name).unwrap_or_else(|_| default.into()).split(',').filter_map(|v| v.trim().parse().ok()).collect()
}

async fn repeat<F, Fut>(runs: usize, mut f: F) -> anyhow::Result<Figure>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<f64>>,
{
    let mut values = Vec::new();
    for i in 0..runs {
        values.push(f(i).await?);
    }
    Ok(Figure { values })
}

/// What Redis has done so far, as far as the cost row cares.
#[derive(Debug, Clone, Copy, Default)]
struct RedisWork {
    /// Commands, those run inside scripts included.
    commands: f64,
    /// Socket reads: ≈ network round trips from clients (pipelined commands share one).
    reads: f64,
    /// Script calls (`EVALSHA`/`EVAL`): the round trips that carry the ledger's work.
    scripts: f64,
    /// CPU time of Redis' main thread (µs): one core is all a Redis can use for commands.
    cpu_us: f64,
}

impl std::ops::Sub for RedisWork {
    type Output = RedisWork;
    fn sub(self, o: Self) -> Self {
        RedisWork {
            commands: self.commands - o.commands,
            reads: self.reads - o.reads,
            scripts: self.scripts - o.scripts,
            cpu_us: self.cpu_us - o.cpu_us,
        }
    }
}

impl RedisWork {
    fn per(self, n: usize) -> Self {
        let n = n as f64;
        RedisWork {
            commands: self.commands / n,
            reads: self.reads / n,
            scripts: self.scripts / n,
            cpu_us: self.cpu_us / n,
        }
    }
}

async fn redis_work(url: &str) -> anyhow::Result<RedisWork> {
    let client = redis::Client::open(url)?;
    let mut con = client.get_multiplexed_async_connection().await?;
    let info: String = redis::cmd("INFO").arg("all").query_async(&mut con).await?;
    let get = |k: &str| -> f64 {
        info.lines()
            .find_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix(':')))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    };
    let calls = |cmd: &str| -> f64 {
        info.lines()
            .find_map(|l| l.strip_prefix(&format!("cmdstat_{cmd}:calls=")))
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    Ok(RedisWork {
        commands: get("total_commands_processed"),
        reads: get("total_reads_processed"),
        scripts: calls("evalsha") + calls("eval"),
        cpu_us: (get("used_cpu_user_main_thread") + get("used_cpu_sys_main_thread")) * 1e6,
    })
}

fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let runs = env_list("BENCH_RUNS", "3").first().copied().unwrap_or(3).max(1);
    let sizes = env_list("BENCH_SIZES", "5000,20000,100000");
    // BENCH_ONLY=2,5 runs only those rows (for investigating one figure).
    let only = env_list("BENCH_ONLY", "1,2,3,4,5,6,7,8,9,10,11");
    let want = |row: usize| only.contains(&row);
    let biggest = sizes.iter().copied().max().unwrap_or(5_000);
    let started = Instant::now();
    let dir = std::env::temp_dir().join(format!("qfrefund-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    // Every row gets a Redis and a simulator of its own: what earlier rows left behind (hundreds of
    // thousands of records, an AOF to rewrite, a simulator scanning every refund it holds on each
    // enquiry) must not slow down a later figure.
    let stage = |sim_payments: usize| Stage::start_in(dir.clone(), sim_payments);
    let mut rows: Vec<(String, String)> = Vec::new();
    let mut targets = targets::Targets::default();
    let mut log = |name: String, value: String| {
        eprintln!("{name}: {value}");
        rows.push((name, value));
    };

    // 1. Baseline: bare apalis, no-op handler. Long drains are measured over a 10 s window.
    let mut base_default = Vec::new();
    // Each baseline gets a Redis of its own, dropped afterwards: a bare apalis worker's background
    // tasks outlive `run_until`, and on a shared Redis they would tax every later measurement.
    for &n in sizes.iter().filter(|_| want(1) || want(2)) {
        let f = repeat(runs, |i| async move {
            let r = RedisServer::start_with_aof()?;
            baseline::run(&r.url(), Flavour::Default, n, Duration::from_secs(10), format!("d{n}-{i}")).await
        })
        .await?;
        log(format!("1. bare apalis, Config::default(), backlog {n} (jobs/s)"), f.show(0));
        base_default.push((n, f.median()));
        let f = repeat(runs, |i| async move {
            let r = RedisServer::start_with_aof()?;
            baseline::run(&r.url(), Flavour::Qfrefund, n, Duration::from_secs(10), format!("q{n}-{i}")).await
        })
        .await?;
        log(format!("1. bare apalis, qfrefund's apalis config, backlog {n} (jobs/s)"), f.show(0));
    }

    // 2. qfrefund end to end, simulator at 0 ms, every refund succeeding.
    let mut e2e_rates = Vec::new();
    for &workers in [1usize, 2].iter().filter(|_| want(2)) {
        for &n in &sizes {
            let st = stage(n).await?;
            let bed = &st.bed;
            let f = repeat(runs, |i| e2e::throughput(bed, format!("e{workers}-{n}-{i}"), n, workers, 64)).await?;
            let base = base_default.iter().find(|(b, _)| *b == n).map_or(f64::NAN, |(_, r)| *r);
            log(
                format!("2. qfrefund end to end, {workers} worker(s), backlog {n} (refunds/s; × bare default)"),
                format!("{} ; {:.2}×", f.show(0), f.median() / base),
            );
            e2e_rates.push((workers, n, f.median()));
            if workers == 1 && n == 5_000 {
                targets.e2e_5k_ratio = Some(f.median() / base);
            }
        }
    }
    let one = |n: usize| e2e_rates.iter().find(|(w, m, _)| *w == 1 && *m == n).map(|(_, _, r)| *r);
    if let (Some(small), Some(big)) = (one(5_000), one(100_000)) {
        targets.flat = Some(big / small);
    }

    // 3. Latency-bound: QFPay answering in 50 ms.
    if want(3) {
        let st = stage(256 * 40).await?;
        let (bed, sim) = (&st.bed, &st.sim);
        sim.set_faults(Faults { latency_ms: 50, ..Faults::default() }).map_err(anyhow::Error::msg)?;
        for c in [64usize, 256] {
            let (mut ends, mut steady) = (Vec::new(), Vec::new());
            for i in 0..runs {
                let (rate, s) = e2e::rates(bed, format!("lat{c}-{i}"), c * 40, 1, c).await?;
                ends.push(rate);
                steady.push(s);
            }
            let (f, steady) = (Figure { values: ends }, Figure { values: steady });
            let ideal = c as f64 / 0.05;
            log(
                format!(
                    "3. simulator at 50 ms, concurrency {c}, {} refunds: steady state (refunds/s; × ideal {ideal:.0})",
                    c * 40
                ),
                format!("{} ; {:.2}×", steady.show(0), steady.median() / ideal),
            );
            log(
                format!(
                    "3. simulator at 50 ms, concurrency {c}: end to end, ramp-up and drain included (refunds/s; × ideal)"
                ),
                format!("{} ; {:.2}×", f.show(0), f.median() / ideal),
            );
        }
        let lat = e2e::steady(bed, 200, 10).await?;
        log(
            "3. simulator at 50 ms, steady 200 refunds/s for 10 s: enqueue → final (ms)".into(),
            format!("p50 {:.0}, p99 {:.0}", percentile(&lat, 50.0), percentile(&lat, 99.0)),
        );
        sim.set_faults(Faults::default()).map_err(anyhow::Error::msg)?;
    }

    // 4. Idle pickup.
    if want(4) {
        let st = stage(1_000).await?;
        let lat = e2e::idle_pickup(&st.bed, 50).await?;
        targets.pickup_p99_ms = Some(percentile(&lat, 99.0));
        log(
            "4. idle pickup, enqueue → submit, 50 tries (ms)".into(),
            format!("p50 {:.1}, p99 {:.1}", percentile(&lat, 50.0), percentile(&lat, 99.0)),
        );
    }

    // 5. Recovery after kill -9 of a worker holding in-flight refunds.
    if want(5) {
        let st = stage(1_000).await?;
        let rec = repeat(runs, |i| e2e::recovery(&st.bed, &st.sim, i)).await?;
        targets.recovery_s = Some(rec.median());
        log(
            "5. recovery after kill -9 (s until another worker finished them; bare default apalis: 300 s)".into(),
            rec.show(1),
        );
    }
    // 6. Redis cost per refund (5k, one worker) beside the bare apalis job, each on a fresh Redis.
    if want(6) {
        let n = 5_000;
        let base_redis = RedisServer::start_with_aof()?;
        let b0 = redis_work(&base_redis.url()).await?;
        baseline::run(&base_redis.url(), Flavour::Default, n, Duration::from_secs(60), "cost-base".into()).await?;
        let base = (redis_work(&base_redis.url()).await? - b0).per(n);
        drop(base_redis);
        let st = stage(n).await?;
        let q0 = redis_work(&st.bed.redis_url).await?;
        e2e::throughput(&st.bed, "cost".into(), n, 1, 64).await?;
        let ours = (redis_work(&st.bed.redis_url).await? - q0).per(n);
        (targets.cpu_us, targets.cpu_ratio, targets.commands) =
            (Some(ours.cpu_us), Some(ours.cpu_us / base.cpu_us), Some(ours.commands));
        drop(st);
        log(
            "6. Redis per job, bare apalis no-op (incl. staging): commands / round trips (reads) / script calls / main-thread CPU µs".into(),
            format!("{:.1} / {:.2} / {:.2} / {:.0}", base.commands, base.reads, base.scripts, base.cpu_us),
        );
        log(
            "6. Redis per refund, qfrefund enqueue → final: commands (incl. inside scripts) / round trips (reads) / script calls / main-thread CPU µs".into(),
            format!("{:.1} / {:.2} / {:.2} / {:.0}", ours.commands, ours.reads, ours.scripts, ours.cpu_us),
        );
        // The design's minimum: two script calls per refund must bracket the call to QFPay (the
        // claim, persisted before sending, and the transition after it); the enqueue is batched
        // (100 refunds per call); apalis' own calls per job come on top, as in the bare run.
        let minimum = 2.0 + 0.01 + base.scripts;
        log(
            "6. script round trips per refund vs the design's minimum (claim + transition + 1/100 enqueue + apalis' own per job)".into(),
            format!("{:.2} vs {:.2} ; {:.2}×", ours.scripts, minimum, ours.scripts / minimum),
        );
        log(
            "6. ceiling set by Redis' one core: 10^6 / CPU µs per refund (refunds/s); bare apalis no-op (jobs/s)"
                .into(),
            format!("{:.0} ; {:.0}", 1e6 / ours.cpu_us, 1e6 / base.cpu_us),
        );
        // Now that the ledger is the queue: the claim is batched (K = 32 per call) and apalis adds
        // no Redis calls of its own.
        let ledger_minimum = 1.0 / 32.0 + 1.0 + 0.01;
        log(
            "6. script calls per refund vs the ledger-backend minimum (1/32 claim_due + transition + 1/100 enqueue)"
                .into(),
            format!("{:.2} vs {:.2} ; {:.2}×", ours.scripts, ledger_minimum, ours.scripts / ledger_minimum),
        );
        log(
            "6. Redis CPU per refund × bare apalis no-op job (same run)".into(),
            format!("{:.2}×", ours.cpu_us / base.cpu_us),
        );
        for (name, value) in scripts::per_script(n).await? {
            log(name, value);
        }
    }

    // 7. Import: a 100k-row CSV through `qfrefund import`.
    if want(7) {
        let st = stage(1_000).await?;
        let bed = &st.bed;
        let rows_n = 100_000usize.min(biggest.max(5_000));
        let csv = dir.join("import.csv");
        {
            let mut f = std::io::BufWriter::new(std::fs::File::create(&csv)?);
            writeln!(f, "syssn,out_trade_no,txamt,orig_txamt")?;
            for i in 1..=rows_n as u64 {
                writeln!(f, "{},IMP-{i},1,100000", qfpay_sim::args::generated_syssn(i))?;
            }
        }
        let imp = repeat(runs, |i| {
            let csv = csv.clone();
            async move {
                let env = bed.env(&format!("bench-import-{i}"), 32);
                let t = Instant::now();
                let out = std::process::Command::new(qfrefund_bin()).arg("import").arg(&csv).envs(&env).output()?;
                anyhow::ensure!(out.status.success(), "import failed: {}", String::from_utf8_lossy(&out.stderr));
                Ok(rows_n as f64 / t.elapsed().as_secs_f64())
            }
        })
        .await?;
        log(format!("7. import of a {rows_n}-row CSV (rows/s)"), imp.show(0));
        let bare = repeat(runs, |i| {
            let url = bed.redis_url.clone();
            async move { baseline::push_bulk(&url, rows_n, &format!("push-{i}")).await }
        })
        .await?;
        log(
            format!("7. bare apalis-redis push_bulk of {rows_n} jobs, chunks of 1000 (jobs/s; import × it)"),
            format!("{} ; {:.2}×", bare.show(0), imp.median() / bare.median()),
        );
        (targets.import, targets.import_ratio) = (Some(imp.median()), Some(imp.median() / bare.median()));
    }

    // 8. Worker peak RSS at concurrency 256.
    if want(8) {
        let st = stage(20_000).await?;
        let bed = &st.bed;
        let ns = "bench-rss";
        let mut w = bed.workers(ns, 1, 256);
        let l = connect(&bed.redis_url, ns).await;
        for chunk in e2e::refunds("RSS", 20_000).chunks(10_000) {
            for r in l.enqueue_batch(chunk.to_vec()).await {
                r?;
            }
        }
        let t = Instant::now();
        while e2e::succeeded(&l).await < 20_000 && t.elapsed() < Duration::from_secs(300) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let rss = vm_hwm_kib(w[0].pid()).unwrap_or(0);
        targets.rss_mib = Some(rss as f64 / 1024.0);
        w[0].terminate();
        log("8. worker peak RSS at concurrency 256, 20k refunds (MiB)".into(), format!("{:.1}", rss as f64 / 1024.0));
    }

    // 9. 1, 2 and 4 shards, each on a Redis Cluster primary of its own.
    if want(9) {
        targets.shard_cpu_ratio = shards::row(&dir, runs, &mut log).await?;
    }

    // 10. Redis memory per refund, queued, final, after events_retention, archived.
    if want(10) || want(11) {
        targets.memory = Some(memory::row(&dir, &mut log).await?);
    }
    // 11. The soak: a steady stream of refunds with a 60 s retention.
    if want(11) {
        // Row 10 counts a refund's tombstone and its payment's together.
        let per_tombstone = targets.memory.map_or(0.0, |m| m.tombstone / 2.0);
        targets.soak = Some(soak::row(&dir, per_tombstone, &mut log).await?);
    }

    report::write_results(&rows, runs, started.elapsed(), &targets)?;
    if std::env::var("BENCH_KEEP").is_err() {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        eprintln!("logs kept in {}", dir.display());
    }
    Ok(())
}

/// A Redis (AOF everysec) and a simulator (no faults, `payments` demo payments) for one row.
struct Stage {
    bed: Bed,
    sim: SimHandle,
    _redis: RedisServer,
}

impl Stage {
    async fn start_in(dir: std::path::PathBuf, payments: usize) -> anyhow::Result<Self> {
        let redis = RedisServer::start_with_aof()?;
        let config = SimConfig { faults: Faults::default(), ..SimConfig::demo(payments.max(1_000) as u64) };
        let sim = SimHandle::start_local(config).await?;
        let bed = Bed { redis_url: redis.url(), sim_url: sim.url(), dir };
        Ok(Self { bed, sim, _redis: redis })
    }
}
