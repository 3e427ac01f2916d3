//! High availability, proven on loopback: a Redis primary with two replicas and three sentinels; the
//! primary is killed mid-run; workers (and the producer) follow the new primary by themselves, and
//! QFPay's audit shows no refund lost and none doubled.

#![allow(clippy::unwrap_used)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ledger::{Ledger, LedgerConfig, NewRefund, State};
use qfpay_sim::args::generated_syssn;
use qfrefund_e2e::{Scratch, WorkerProcess, env_for};
use testkit::{Aof, Faults, RedisServer, SimConfig, SimHandle, redis_server_binary, unique_namespace};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A `redis-server --sentinel` process watching `mymaster`.
struct Sentinel {
    port: u16,
    child: Child,
}

impl Sentinel {
    fn start(dir: &std::path::Path, primary_port: u16) -> Self {
        let port = free_port();
        let conf = dir.join(format!("sentinel-{port}.conf"));
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\nsentinel monitor mymaster 127.0.0.1 {primary_port} 2\n\
                 sentinel down-after-milliseconds mymaster 1000\nsentinel failover-timeout mymaster 5000\n\
                 sentinel parallel-syncs mymaster 1\n",
                dir.display()
            ),
        )
        .unwrap();
        let child = Command::new(redis_server_binary())
            .arg(&conf)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Self { port, child }
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn info(url: &str, section: &str) -> String {
    let client = redis::Client::open(url).unwrap();
    match client.get_multiplexed_async_connection().await {
        Ok(mut c) => redis::cmd("INFO").arg(section).query_async(&mut c).await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

async fn wait_until<F: std::future::Future<Output = bool>>(what: &str, limit: Duration, mut f: impl FnMut() -> F) {
    let t = Instant::now();
    while !f().await {
        assert!(t.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_failover_mid_run_loses_and_doubles_nothing() {
    let scratch = Scratch::new("ha");
    let mut primary = RedisServer::builder().aof(Aof::EverySec).start().unwrap();
    // Two replicas: after the failover one is the primary and the other follows it, so a write
    // can still be confirmed by a replica (QFREFUND_REDIS_WAIT_REPLICAS=1).
    let replicas: Vec<RedisServer> = (0..2)
        .map(|_| {
            RedisServer::builder()
                .aof(Aof::EverySec)
                .arg("--replicaof")
                .arg("127.0.0.1")
                .arg(&primary.port().to_string())
                .start()
                .unwrap()
        })
        .collect();
    for r in &replicas {
        let u = r.url();
        wait_until("a replica to sync", Duration::from_secs(20), || {
            let u = u.clone();
            async move { info(&u, "replication").await.contains("master_link_status:up") }
        })
        .await;
    }
    let sentinels: Vec<Sentinel> = (0..3).map(|_| Sentinel::start(&scratch.0, primary.port())).collect();
    let hosts: Vec<String> = sentinels.iter().map(|s| format!("127.0.0.1:{}", s.port)).collect();
    let url = format!("redis+sentinel://{}/mymaster", hosts.join(","));
    let first_sentinel = format!("redis://{}", hosts[0]);
    wait_until("the sentinels to see the replica", Duration::from_secs(20), || {
        let u = first_sentinel.clone();
        async move { info(&u, "sentinel").await.contains("slaves=2,sentinels=3") }
    })
    .await;

    let n = 400u64;
    let sim = SimHandle::start_local(SimConfig {
        faults: Faults { latency_ms: 40, ..Faults::default() },
        ..SimConfig::demo(n)
    })
    .await
    .unwrap();
    let ns = unique_namespace("ha");
    let mut env = env_for(&url, &ns, &sim.url());
    env.insert("QFREFUND_REQUIRE_AOF".into(), "on".into());
    env.insert("QFREFUND_REDIS_WAIT_REPLICAS".into(), "1".into());
    // The claim's WAIT comes out of the tests' short lease (3 s, HTTP 2 s): keep it within.
    env.insert("QFREFUND_REDIS_WAIT_TIMEOUT_MS".into(), "400".into());
    env.insert("QFREFUND_CONCURRENCY".into(), "4".into());
    let mut workers: Vec<WorkerProcess> =
        (0..2).map(|i| WorkerProcess::spawn(&env, scratch.path(&format!("worker{i}.log")))).collect();

    // The producer goes through the sentinels too, and waits for a replica on every enqueue.
    let config = LedgerConfig {
        namespace: ns.clone(),
        wait_replicas: 1,
        ..LedgerConfig::default().with_shards(testkit::test_shards())
    };
    let l = Ledger::connect(&url, config).await.unwrap();
    let otns: Vec<String> = (1..=n).map(|i| format!("RF-HA{i}")).collect();
    let batch: Vec<NewRefund> =
        otns.iter().enumerate().map(|(i, o)| NewRefund::new(&generated_syssn(i as u64 + 1), o, 100)).collect();
    for r in l.enqueue_batch(batch).await {
        r.unwrap();
    }
    let succeeded = |l: &Ledger| {
        let l = l.clone();
        async move {
            l.counts().await.map(|c| c.iter().find(|(s, _)| *s == State::Succeeded).map_or(0, |(_, k)| *k)).unwrap_or(0)
        }
    };
    wait_until("a quarter to succeed", Duration::from_secs(30), || {
        let f = succeeded(&l);
        async move { f.await >= n / 4 }
    })
    .await;
    let killed_at = succeeded(&l).await;
    primary.kill();
    let failover = Instant::now();

    // Everything ends succeeded, through the new primary, without anyone restarting a worker.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let done = succeeded(&l).await;
        if done >= n {
            break;
        }
        assert!(Instant::now() < deadline, "only {done} of {n} succeeded after the failover");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "failover at {killed_at}/{n} succeeded; all {n} final {:.1} s after the primary was killed",
        failover.elapsed().as_secs_f64()
    );
    for w in &mut workers {
        w.terminate();
    }
    let audit = sim.audit();
    assert_eq!(audit["violations"], serde_json::json!([]), "nothing doubled or over-refunded: {}", audit["violations"]);
    for o in &otns {
        assert_eq!(audit["by_out_trade_no"][o]["refunded"], 100, "{o} refunded exactly once at QFPay");
        let rec = l.get("default", o).await.unwrap().unwrap();
        assert_eq!(rec.state, State::Succeeded, "{o}");
    }
    assert_eq!(audit["totals"]["succeeded"], n);
    let logs: String =
        (0..2).map(|i| std::fs::read_to_string(scratch.path(&format!("worker{i}.log"))).unwrap_or_default()).collect();
    assert!(logs.contains("primary moved"), "the workers followed the failover themselves");
}

/// 1, 2 and 4 worker processes on one Redis: refunds/s for each, and QFPay's audit after each run
/// shows no refund doubled. The figure of merit is the rate per worker relative to one worker:
/// on one machine the workers share the cores with Redis and the simulator, so it falls; across
/// machines it is what sizing needs (see docs/deploying.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_two_and_four_workers_share_the_work_without_doubling_anything() {
    let scratch = Scratch::new("scale");
    let redis = RedisServer::builder().aof(Aof::EverySec).start().unwrap();
    let n = 2_000u64;
    let mut rates = Vec::new();
    for (round, workers) in [1usize, 2, 4].into_iter().enumerate() {
        let sim = SimHandle::start_local(SimConfig::demo(n)).await.unwrap();
        let ns = unique_namespace(&format!("scale{workers}"));
        let mut env = env_for(&redis.url(), &ns, &sim.url());
        env.insert("QFREFUND_REQUIRE_AOF".into(), "on".into());
        env.insert("RUST_LOG".into(), "warn".into());
        let mut procs: Vec<WorkerProcess> =
            (0..workers).map(|i| WorkerProcess::spawn(&env, scratch.path(&format!("r{round}-w{i}.log")))).collect();
        let l = Ledger::connect(
            &redis.url(),
            LedgerConfig { namespace: ns, ..LedgerConfig::default().with_shards(testkit::test_shards()) },
        )
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let started = Instant::now();
        let batch: Vec<NewRefund> =
            (1..=n).map(|i| NewRefund::new(&generated_syssn(i), &format!("RF-SC{i}"), 100)).collect();
        for r in l.enqueue_batch(batch).await {
            r.unwrap();
        }
        loop {
            let c = l.counts().await.unwrap();
            if c.iter().find(|(s, _)| *s == State::Succeeded).is_some_and(|(_, k)| *k >= n) {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(120), "{workers} workers: not done in time");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let rate = n as f64 / started.elapsed().as_secs_f64();
        for p in &mut procs {
            p.terminate();
        }
        let audit = sim.audit();
        assert_eq!(audit["violations"], serde_json::json!([]), "{workers} workers: {}", audit["violations"]);
        assert_eq!(audit["totals"]["succeeded"], n, "{workers} workers: each refund once");
        rates.push((workers, rate));
    }
    let base = rates[0].1;
    for (w, r) in &rates {
        eprintln!("scale: {w} worker(s): {r:.0} refunds/s; per worker vs one: {:.2}", r / base / *w as f64);
    }
}

/// Replication is asynchronous: through Sentinel without waiting for a replica, a failover can lose
/// an acknowledged enqueue or a claim whose refund was sent. Allowed (one replica may be all there
/// is), but never silently.
#[tokio::test]
async fn a_sentinel_url_with_wait_replicas_0_warns_that_a_failover_can_lose_acknowledged_writes() {
    let scratch = Scratch::new("ha-warn");
    let primary = RedisServer::start().unwrap();
    let sentinel = Sentinel::start(&scratch.0, primary.port());
    let url = format!("redis+sentinel://127.0.0.1:{}/mymaster", sentinel.port);
    let mut env = env_for(&url, &unique_namespace("ha-warn"), "http://127.0.0.1:1");
    env.insert("QFREFUND_REDIS_WAIT_REPLICAS".into(), "0".into());
    let deadline = Instant::now() + Duration::from_secs(20);
    let out = loop {
        let out = Command::new(qfrefund_e2e::qfrefund_bin()).arg("ping").env_clear().envs(&env).output().unwrap();
        if out.status.success() || Instant::now() > deadline {
            break out;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("WARN") && stderr.contains("a failover can lose acknowledged enqueues"), "{stderr}");
    // A direct URL to the same server: no such warning.
    env.insert("QFREFUND_REDIS_URL".into(), primary.url());
    let out = Command::new(qfrefund_e2e::qfrefund_bin()).arg("ping").env_clear().envs(&env).output().unwrap();
    assert!(!String::from_utf8_lossy(&out.stderr).contains("a failover can lose"));
}
