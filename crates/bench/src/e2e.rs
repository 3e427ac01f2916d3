//! qfrefund end to end: real `qfrefund worker` processes (release build), a real redis-server
//! (AOF everysec) and the simulator, from enqueue to every refund final.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ledger::{Ledger, NewRefund, State};
use qfpay_sim::args::generated_syssn;
use qfrefund_e2e::{WorkerProcess, env_for, ledger as connect};
use testkit::{Faults, SimHandle};

/// Where a bench run happens.
pub struct Bed {
    pub redis_url: String,
    pub sim_url: String,
    pub dir: std::path::PathBuf,
}

impl Bed {
    pub fn env(&self, ns: &str, concurrency: usize) -> HashMap<String, String> {
        let mut env = env_for(&self.redis_url, ns, &self.sim_url);
        env.insert("QFREFUND_CONCURRENCY".into(), concurrency.to_string());
        env.insert("RUST_LOG".into(), std::env::var("BENCH_WORKER_LOG").unwrap_or_else(|_| "warn".into()));
        // For experiments: pass worker settings through from the bench's own environment.
        for (k, v) in std::env::vars().filter(|(k, _)| k.starts_with("QFREFUND_")) {
            env.insert(k, v);
        }
        env
    }

    pub fn workers(&self, ns: &str, n: usize, concurrency: usize) -> Vec<WorkerProcess> {
        (0..n)
            .map(|i| WorkerProcess::spawn(&self.env(ns, concurrency), self.dir.join(format!("{ns}-{i}.log"))))
            .collect()
    }
}

pub fn refunds(tag: &str, n: usize) -> Vec<NewRefund> {
    (1..=n as u64)
        .map(|i| NewRefund {
            orig_txamt: Some(100_000),
            ..NewRefund::new(&generated_syssn(i), &format!("{tag}-{i}"), 1)
        })
        .collect()
}

pub async fn succeeded(l: &Ledger) -> u64 {
    l.counts().await.map(|c| c.iter().find(|(s, _)| *s == State::Succeeded).map_or(0, |(_, n)| *n)).unwrap_or(0)
}

/// Refunds per second from the first enqueue to the last final state, with `workers` processes.
pub async fn throughput(bed: &Bed, tag: String, n: usize, workers: usize, concurrency: usize) -> anyhow::Result<f64> {
    Ok(rates(bed, tag, n, workers, concurrency).await?.0)
}

/// (end to end, steady state) refunds per second. End to end: from the first enqueue to the last
/// final state. Steady state: between the 10th and the 90th percentile of completions, which leaves
/// out the ramp-up (workers picking up the first jobs) and the drain (the last requests' latency):
/// what "concurrency ÷ latency" describes.
pub async fn rates(bed: &Bed, tag: String, n: usize, workers: usize, concurrency: usize) -> anyhow::Result<(f64, f64)> {
    let ns = format!("bench-{tag}");
    let mut procs = bed.workers(&ns, workers, concurrency);
    let l = connect(&bed.redis_url, &ns).await;
    tokio::time::sleep(Duration::from_millis(800)).await; // workers up and idle
    let started = Instant::now();
    for chunk in refunds(&tag, n).chunks(10_000) {
        for r in l.enqueue_batch(chunk.to_vec()).await {
            r?;
        }
    }
    let deadline = started + Duration::from_secs(600);
    let (lo, hi) = (n as u64 / 10, n as u64 * 9 / 10);
    let (mut t_lo, mut t_hi) = (None, None);
    loop {
        let done = succeeded(&l).await;
        if done >= lo && t_lo.is_none() {
            t_lo = Some((Instant::now(), done));
        }
        if done >= hi && t_hi.is_none() {
            t_hi = Some((Instant::now(), done));
        }
        if done >= n as u64 {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "{tag}: not drained in time");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    let steady = match (t_lo, t_hi) {
        (Some((a, na)), Some((b, nb))) if b > a && nb > na => (nb - na) as f64 / (b - a).as_secs_f64(),
        _ => rate,
    };
    for p in &mut procs {
        p.terminate();
    }
    Ok((rate, steady))
}

/// Enqueue → leaving `queued`, for one refund at a time to an idle worker (ms).
pub async fn idle_pickup(bed: &Bed, tries: usize) -> anyhow::Result<Vec<f64>> {
    let ns = "bench-idle";
    let mut procs = bed.workers(ns, 1, 32);
    let l = connect(&bed.redis_url, ns).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let mut out = Vec::new();
    for (i, r) in refunds("IDLE", tries).into_iter().enumerate() {
        let otn = r.out_trade_no.clone();
        let started = Instant::now();
        l.enqueue(r).await?;
        loop {
            if l.get(ledger::DEFAULT_MERCHANT, &otn).await?.is_some_and(|rec| rec.state != State::Queued) {
                break;
            }
            anyhow::ensure!(started.elapsed() < Duration::from_secs(30), "idle try {i} never picked up");
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        if ms > 100.0 {
            eprintln!("idle pickup: try {i} took {ms:.0} ms");
        }
        out.push(ms);
        tokio::time::sleep(Duration::from_millis(250)).await; // idle again
    }
    procs[0].terminate();
    Ok(out)
}

/// Enqueue → final (ms) for refunds enqueued one by one at `per_sec` for `secs` seconds.
pub async fn steady(bed: &Bed, per_sec: u64, secs: u64) -> anyhow::Result<Vec<f64>> {
    let ns = "bench-steady";
    let mut procs = bed.workers(ns, 1, 64);
    let l = connect(&bed.redis_url, ns).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let n = (per_sec * secs) as usize;
    let all = refunds("STEADY", n);
    let gap = Duration::from_secs_f64(1.0 / per_sec as f64);
    let started = Instant::now();
    for (i, r) in all.iter().enumerate() {
        let due = started + gap * i as u32;
        tokio::time::sleep_until(due.into()).await;
        l.enqueue(r.clone()).await?;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while succeeded(&l).await < n as u64 {
        anyhow::ensure!(Instant::now() < deadline, "steady run not drained");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut out = Vec::with_capacity(n);
    for r in &all {
        let rec = l.get(r.merchant(), &r.out_trade_no).await?.ok_or_else(|| anyhow::anyhow!("record vanished"))?;
        out.push((rec.updated_at - rec.created_at) as f64);
    }
    procs[0].terminate();
    Ok(out)
}

/// Seconds from killing a worker that holds 20 refunds mid-request to another having finished them.
pub async fn recovery(bed: &Bed, sim: &SimHandle, i: usize) -> anyhow::Result<f64> {
    let ns = format!("bench-recovery-{i}");
    let tag = format!("REC{i}");
    sim.set_faults(Faults { hang_after_apply: 1.0, hang_ms: 60_000, ..Faults::default() })
        .map_err(anyhow::Error::msg)?;
    let mut a: Vec<WorkerProcess> = bed.workers(&ns, 1, 32);
    let l = connect(&bed.redis_url, &ns).await;
    for r in l.enqueue_batch(refunds(&tag, 20)).await {
        r?;
    }
    let t = Instant::now();
    loop {
        let mut held = 0;
        for r in refunds(&tag, 20) {
            held +=
                usize::from(l.get(r.merchant(), &r.out_trade_no).await?.is_some_and(|r| r.state == State::Submitting));
        }
        if held == 20 {
            break;
        }
        anyhow::ensure!(t.elapsed() < Duration::from_secs(30), "worker A never held them");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a[0].kill9();
    let killed = Instant::now();
    sim.set_faults(Faults::default()).map_err(anyhow::Error::msg)?;
    let mut b = bed.workers(&ns, 1, 32);
    while succeeded(&l).await < 20 {
        anyhow::ensure!(killed.elapsed() < Duration::from_secs(120), "not recovered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secs = killed.elapsed().as_secs_f64();
    b[0].terminate();
    Ok(secs)
}
