//! A real Redis Cluster (3 primaries, AOF) under a ledger of 8 shards: 4 merchants with their own
//! credentials, the same out_trade_no used by two of them, workers killed with `kill -9` mid-run,
//! and slots migrated between primaries while refunds are in flight. Every refund ends final and
//! was applied once at QFPay (the simulator's audit, which scopes out_trade_no per merchant as
//! QFPay does), and the ledger's keys are spread over every primary.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ledger::{Ledger, LedgerConfig, NewRefund, State};
use qfpay::ClientKey;
use qfpay_sim::args::generated_payment;
use qfpay_sim::bank::Merchant;
use qfrefund_e2e::{Scratch, WorkerProcess, env_for};
use testkit::{Aof, Faults, RedisCluster, SimConfig, SimHandle, unique_namespace};

const SHARDS: usize = 8;
/// (merchant name in qfrefund, QFPay app code, client key)
const MERCHANTS: [(&str, &str, &str); 4] = [
    ("shop-a", "APPA0000000000000000000000000001", "KEYA0000000000000000000000000001"),
    ("shop-b", "APPB0000000000000000000000000002", "KEYB0000000000000000000000000002"),
    ("shop-c", "APPC0000000000000000000000000003", "KEYC0000000000000000000000000003"),
    ("shop-d", "APPD0000000000000000000000000004", "KEYD0000000000000000000000000004"),
];

struct Plan {
    /// (merchant, out_trade_no, syssn, app code, txamt)
    refunds: Vec<(String, String, String, String, u64)>,
}

/// `per_merchant` refunds per merchant, each of its own payment, plus `shared` out_trade_nos used
/// by both shop-a and shop-b (two refunds each).
fn plan(per_merchant: usize, shared: usize) -> (Plan, SimConfig) {
    let mut payments = Vec::new();
    let mut refunds = Vec::new();
    let mut n = 0u64;
    let mut add = |merchant: usize, otn: String, payments: &mut Vec<_>| {
        n += 1;
        let (name, app, _) = MERCHANTS[merchant];
        let mut p = generated_payment(n, 10_000);
        p.app_code = Some(app.into());
        payments.push(p.clone());
        refunds.push((name.to_owned(), otn, p.syssn, app.to_owned(), 100 + n % 50));
    };
    for m in 0..MERCHANTS.len() {
        for i in 0..per_merchant {
            add(m, format!("RF-{m}-{i}"), &mut payments);
        }
    }
    for i in 0..shared {
        add(0, format!("SHARED-{i}"), &mut payments);
        add(1, format!("SHARED-{i}"), &mut payments);
    }
    let merchants = MERCHANTS
        .iter()
        .map(|(_, app, key)| Merchant { app_code: (*app).into(), key: ClientKey::new(*key), mchid: None })
        .collect();
    let faults = Faults { latency_ms: 5, error_5xx: 0.03, drop_after_apply: 0.05, ..Faults::default() };
    (Plan { refunds }, SimConfig { merchants, payments, faults, seed: 11, quiet_window: false })
}

/// The worker environment: the cluster, 8 shards, the four merchants from a config file.
fn worker_env(cluster: &RedisCluster, ns: &str, sim: &SimHandle, scratch: &Scratch) -> HashMap<String, String> {
    let mut toml = format!("shards = {SHARDS}\n");
    for (name, app, _) in MERCHANTS {
        let var = format!("KEY_{}", name.replace('-', "_").to_uppercase());
        toml.push_str(&format!(
            "[merchants.{name}]\napp_code = \"{app}\"\nclient_key_env = \"{var}\"\nbase_url = \"{}\"\n",
            sim.url()
        ));
    }
    let path = scratch.path("qfrefund.toml");
    std::fs::write(&path, toml).unwrap();
    let mut env = env_for(&cluster.url(), ns, &sim.url());
    for k in ["QFPAY_APP_CODE", "QFPAY_CLIENT_KEY", "QFPAY_BASE_URL"] {
        env.remove(k);
    }
    env.insert("QFREFUND_CONFIG".into(), path.display().to_string());
    env.insert("QFREFUND_SHARDS".into(), SHARDS.to_string());
    env.insert("RUST_LOG".into(), "warn".into());
    for (name, _, key) in MERCHANTS {
        env.insert(format!("KEY_{}", name.replace('-', "_").to_uppercase()), key.into());
    }
    env
}

async fn cluster_ledger(cluster: &RedisCluster, ns: &str) -> Ledger {
    let config = LedgerConfig { namespace: ns.into(), ..LedgerConfig::default().with_shards(SHARDS) };
    Ledger::connect(&cluster.url(), config).await.unwrap()
}

async fn enqueue(l: &Ledger, plan: &Plan) {
    let batch: Vec<NewRefund> = plan
        .refunds
        .iter()
        .map(|(m, otn, syssn, _, amt)| NewRefund {
            merchant: Some(m.clone()),
            orig_txamt: Some(10_000),
            ..NewRefund::new(syssn, otn, *amt)
        })
        .collect();
    for r in l.enqueue_batch(batch).await {
        r.unwrap();
    }
}

/// How many refunds are final (or wait for a person) now.
async fn settled(l: &Ledger) -> u64 {
    let c = l.counts().await.unwrap();
    c.iter().filter(|(s, _)| s.is_final() || *s == State::NeedsReview).map(|(_, k)| *k).sum()
}

/// Waits until every refund of the plan is final; panics with the counts after `timeout`.
async fn wait_final(l: &Ledger, n: u64, timeout: Duration) {
    let started = Instant::now();
    loop {
        let counts = l.counts().await;
        if let Ok(c) = &counts {
            let fin: u64 = c.iter().filter(|(s, _)| s.is_final() || *s == State::NeedsReview).map(|(_, k)| *k).sum();
            if fin >= n {
                return;
            }
        }
        assert!(started.elapsed() < timeout, "not all final after {timeout:?}: {counts:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every refund succeeded in the ledger and was applied exactly once, in full, at QFPay.
async fn assert_each_applied_once(l: &Ledger, plan: &Plan, sim: &SimHandle) {
    let audit = sim.audit();
    assert_eq!(audit["violations"], serde_json::json!([]), "{}", audit["violations"]);
    for (m, otn, _, app, amt) in &plan.refunds {
        let rec = l.get(m, otn).await.unwrap().unwrap_or_else(|| panic!("{m}/{otn} missing"));
        assert_eq!(rec.state, State::Succeeded, "{m}/{otn}: {rec:?}");
        let at_qfpay = &audit["by_refund"][format!("{app}/{otn}")];
        assert_eq!(at_qfpay["records"], 1, "{m}/{otn} recorded once at QFPay");
        assert_eq!(at_qfpay["refunded"], *amt, "{m}/{otn} refunded in full, once");
    }
    assert_eq!(audit["totals"]["succeeded"], plan.refunds.len(), "nothing else was refunded");
}

/// One scenario's parts: a 3-primary cluster (AOF), the simulator, the plan enqueued.
struct Run {
    scratch: Scratch,
    cluster: RedisCluster,
    plan: Plan,
    sim: SimHandle,
    env: HashMap<String, String>,
    l: Ledger,
}

impl Run {
    async fn start(name: &str, password: Option<&str>, per_merchant: usize, shared: usize) -> Self {
        let scratch = Scratch::new(name);
        let cluster = match password {
            Some(p) => RedisCluster::start_with_password(3, Aof::EverySec, p),
            None => RedisCluster::start(3, Aof::EverySec),
        }
        .unwrap();
        let (plan, sim_config) = plan(per_merchant, shared);
        let sim = SimHandle::start_local(sim_config).await.unwrap();
        let ns = unique_namespace(name);
        let env = worker_env(&cluster, &ns, &sim, &scratch);
        let l = cluster_ledger(&cluster, &ns).await;
        enqueue(&l, &plan).await;
        Self { scratch, cluster, plan, sim, env, l }
    }

    fn workers(&self, n: usize, tag: &str) -> Vec<WorkerProcess> {
        (0..n).map(|i| WorkerProcess::spawn(&self.env, self.scratch.path(&format!("w{i}-{tag}.log")))).collect()
    }

    /// Waits until every refund is final, then checks each was applied once.
    async fn settles(&self) {
        wait_final(&self.l, self.plan.refunds.len() as u64, Duration::from_secs(120)).await;
        assert_each_applied_once(&self.l, &self.plan, &self.sim).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_of_three_primaries_refunds_each_once_through_kill_9() {
    let run = Run::start("cluster", None, 100, 15).await;
    let Run { scratch, cluster, plan, env, l, .. } = &run;
    let mut workers = run.workers(3, "first");
    // Kill two of them mid-run, one after the other, and start replacements.
    for (i, at_ms) in [(0usize, 700u64), (1, 1_500)] {
        tokio::time::sleep(Duration::from_millis(at_ms)).await;
        assert!(settled(l).await < plan.refunds.len() as u64, "killed mid-run");
        workers[i].kill9();
        workers[i] = WorkerProcess::spawn(env, scratch.path(&format!("w{i}-again.log")));
    }
    run.settles().await;
    // The same out_trade_no under shop-a and shop-b is two refunds, each its merchant's.
    let a = l.get("shop-a", "SHARED-0").await.unwrap().unwrap();
    let b = l.get("shop-b", "SHARED-0").await.unwrap().unwrap();
    assert_ne!(a.syssn, b.syssn);
    // The shards' keys are spread over all three primaries.
    let sizes = cluster.dbsize_per_node().unwrap();
    assert!(sizes.iter().all(|n| *n > 0), "keys on every primary: {sizes:?}");
    for w in &mut workers {
        assert!(w.terminate(), "clean shutdown: {}", w.output());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slots_migrated_between_primaries_mid_run_lose_and_double_nothing() {
    let run = Run::start("reshard", None, 150, 10).await;
    let Run { cluster, plan, l, .. } = &run;
    let mut workers = run.workers(2, "reshard");
    tokio::time::sleep(Duration::from_millis(400)).await;
    // The slot of shop-a's shard moves to another primary while its refunds are being worked on;
    // then a range of slots moves with redis-cli's resharding.
    let tag_slot = cluster.keyslot(&l.keys_for("shop-a").due()).unwrap();
    let from = cluster.slot_owner(tag_slot).unwrap();
    let moved = cluster.migrate_slot(tag_slot, (from + 1) % 3).unwrap();
    assert!(moved > 0, "the shard had keys to move");
    assert_eq!(cluster.slot_owner(tag_slot).unwrap(), (from + 1) % 3);
    assert!(settled(l).await < plan.refunds.len() as u64, "migrated mid-run");
    let out = cluster.migrate_slots(2, 0, 300).unwrap();
    assert!(!out.is_empty());
    run.settles().await;
    for w in &mut workers {
        assert!(w.terminate(), "clean shutdown: {}", w.output());
    }
}

/// The start-up checks run against every primary: one with an evicting memory policy is refused,
/// by name, though the others are fine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_primary_is_checked_at_start_up() {
    let scratch = Scratch::new("cluster-check");
    let cluster = RedisCluster::start(3, Aof::EverySec).unwrap();
    let (_, sim_config) = plan(1, 0);
    let sim = SimHandle::start_local(sim_config).await.unwrap();
    let env = worker_env(&cluster, &unique_namespace("cluster-check"), &sim, &scratch);
    let ping = || {
        std::process::Command::new(qfrefund_e2e::qfrefund_bin()).arg("ping").env_clear().envs(&env).output().unwrap()
    };
    let ok = ping();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let node = &cluster.node_urls()[2];
    let mut con = testkit::raw_connection(node).await;
    let _: () =
        redis::cmd("CONFIG").arg("SET").arg("maxmemory-policy").arg("allkeys-lru").query_async(&mut con).await.unwrap();
    let refused = ping();
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    let port = cluster.ports()[2];
    assert!(err.contains(&format!("cluster primary 127.0.0.1:{port}")) && err.contains("maxmemory-policy"), "{err}");
}

/// AUTH as for a single Redis: every node requires the password, and workers, the library and
/// the CLI reach the cluster through `redis+cluster://:password@…`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_protected_cluster_works_end_to_end() {
    let run = Run::start("cluster-auth", Some("cluster-secret-77"), 10, 2).await;
    let Run { cluster, env, .. } = &run;
    assert!(cluster.url().starts_with("redis+cluster://:cluster-secret-77@"));
    let mut worker = run.workers(1, "auth").remove(0);
    run.settles().await;
    let status = std::process::Command::new(qfrefund_e2e::qfrefund_bin())
        .args(["status", "SHARED-1", "--merchant", "shop-b"])
        .env_clear()
        .envs(env)
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let rec: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!((rec["merchant"].as_str(), rec["state"].as_str()), (Some("shop-b"), Some("succeeded")));
    let mut wrong = env.clone();
    wrong.insert("QFREFUND_REDIS_URL".into(), cluster.url().replace("cluster-secret-77", "not-the-pass-42"));
    let refused =
        std::process::Command::new(qfrefund_e2e::qfrefund_bin()).arg("ping").env_clear().envs(&wrong).output().unwrap();
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!err.contains("not-the-pass-42") && !err.contains("cluster-secret-77"), "no password in the error: {err}");
    assert!(worker.terminate(), "clean shutdown: {}", worker.output());
}
