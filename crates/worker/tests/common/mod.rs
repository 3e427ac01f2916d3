//! In-process pipeline harness: a real redis-server, the simulator over HTTP, workers as tasks.

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ledger::{Ledger, LedgerConfig, NewRefund, Record, State};
use qfpay_sim::args::{DEMO_APP_CODE, DEMO_CLIENT_KEY, generated_syssn};
use testkit::{Faults, RedisServer, SimConfig, SimHandle, unique_namespace};
use worker::runner::ShutdownTrigger;
use worker::{Merchant, Shutdown, WorkerConfig};

pub struct Env {
    pub redis: RedisServer,
    pub sim: SimHandle,
    pub ledger: Ledger,
    pub config: WorkerConfig,
}

/// Short timings so every path of the state machine runs in a test's time.
pub fn fast_config(redis_url: &str, sim_url: &str, namespace: &str) -> WorkerConfig {
    let mut c = WorkerConfig { redis_url: redis_url.into(), ..WorkerConfig::default() };
    c.ledger = LedgerConfig { namespace: namespace.into(), ..LedgerConfig::default() };
    c.merchants = HashMap::from([(
        "default".to_owned(),
        Merchant {
            name: "default".into(),
            app_code: DEMO_APP_CODE.into(),
            key: qfpay::ClientKey::new(DEMO_CLIENT_KEY),
            mchid: None,
            base_url: sim_url.into(),
            alg: qfpay::SignAlg::Md5,
            webhook: None,
        },
    )]);
    c.http.timeout = Duration::from_millis(800);
    c.http.connect_timeout = Duration::from_millis(300);
    let p = &mut c.policy;
    p.lease = Duration::from_millis(1_500);
    p.enquiry_first = Duration::from_millis(100);
    p.enquiry_base = Duration::from_millis(100);
    p.enquiry_cap = Duration::from_millis(400);
    p.resubmit_base = Duration::from_millis(100);
    p.resubmit_cap = Duration::from_millis(400);
    p.not_found_grace = Duration::from_millis(1_600);
    p.syssn_busy_wait = Duration::from_millis(20);
    p.paused_wait = Duration::from_millis(200);
    c.poll_interval = Duration::from_millis(20);
    c.heartbeat = Duration::from_secs(1);
    c.feed_idle = Duration::from_millis(50);
    c.feed_hold = Duration::from_secs(3);
    c.rate_per_sec = 100_000.0;
    c.rate_burst = 100_000;
    c.quiet_window = false;
    c.concurrency = 16;
    c.drain_grace = Duration::from_secs(5);
    c.worker_name = "test".into();
    // Most tests run a Redis without AOF (the ones about durability turn it on).
    c.require_aof = false;
    c
}

impl Env {
    pub async fn start(name: &str, payments: u64, faults: Faults) -> Self {
        Self::start_with(name, SimConfig { faults, ..SimConfig::demo(payments) }, false).await
    }

    pub async fn start_with(name: &str, sim: SimConfig, aof: bool) -> Self {
        let redis = if aof { RedisServer::start_with_aof().unwrap() } else { RedisServer::start().unwrap() };
        let sim = SimHandle::start_local(sim).await.unwrap();
        let ns = unique_namespace(name);
        let config = fast_config(&redis.url(), &sim.url(), &ns);
        let ledger = Ledger::connect(&redis.url(), config.ledger.clone()).await.unwrap();
        Self { redis, sim, ledger, config }
    }

    pub fn worker(&self) -> Worker {
        Worker::start(self.config.clone())
    }

    pub async fn enqueue(&self, payment: u64, otn: &str, amount: u64) -> Record {
        self.ledger.enqueue(NewRefund::new(&generated_syssn(payment), otn, amount)).await.unwrap().record().clone()
    }

    /// A refund sent to the simulator directly, as some other system (or an earlier attempt whose
    /// record we lost) would have.
    pub async fn direct_refund(&self, payment: u64, otn: &str, amount: u64) -> String {
        let client = qfpay::Client::new(
            qfpay::Client::pool(&qfpay::ClientConfig::default()).unwrap(),
            &self.sim.url(),
            SimConfig::demo_credentials(),
        )
        .unwrap();
        let req =
            qfpay::RefundRequest::new(&generated_syssn(payment), otn, amount, qfpay::Txdtm::now(8 * 3600)).unwrap();
        client.refund(&req).await.unwrap().respcd().to_owned()
    }

    pub async fn record(&self, otn: &str) -> Record {
        self.ledger.get(otn).await.unwrap().unwrap()
    }

    /// Waits until every refund is in one of `states`; panics with their states after `timeout`.
    pub async fn wait_for(&self, otns: &[String], states: &[State], timeout: Duration) -> Vec<Record> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut recs = Vec::new();
            for o in otns {
                recs.push(self.ledger.get(o).await.ok().flatten());
            }
            if recs.iter().all(|r| r.as_ref().is_some_and(|r| states.contains(&r.state))) {
                return recs.into_iter().map(Option::unwrap).collect();
            }
            if Instant::now() > deadline {
                let mut by_state: HashMap<String, usize> = HashMap::new();
                for r in &recs {
                    *by_state.entry(r.as_ref().map_or("missing".into(), |r| r.state.to_string())).or_default() += 1;
                }
                let sample: Vec<_> = recs.iter().flatten().filter(|r| !states.contains(&r.state)).take(3).collect();
                panic!("not all in {states:?} after {timeout:?}: {by_state:?}; e.g. {sample:#?}");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The simulator's audit: refunds recorded for `otn` and the amount refunded by them.
    pub fn audit_of(&self, otn: &str) -> (u64, u64) {
        let a = self.sim.audit();
        let e = &a["by_out_trade_no"][otn];
        (e["records"].as_u64().unwrap_or(0), e["refunded"].as_u64().unwrap_or(0))
    }

    /// Promise 1 and 3 against the simulator: no id recorded twice, no payment over-refunded, and
    /// every refund the ledger calls succeeded is one QFPay applied (and vice versa).
    pub async fn assert_audit_agrees(&self, otns: &[String]) {
        let audit = self.sim.audit();
        assert_eq!(audit["violations"].as_array().unwrap().len(), 0, "{}", audit["violations"]);
        for o in otns {
            let r = self.record(o).await;
            let (records, refunded) = self.audit_of(o);
            assert!(records <= 1, "{o} recorded {records} times at QFPay");
            match r.state {
                State::Succeeded => assert_eq!(refunded, r.txamt, "{o}: ledger succeeded, QFPay refunded {refunded}"),
                State::Failed | State::Cancelled => {
                    assert_eq!(refunded, 0, "{o}: ledger {} but QFPay refunded {refunded}", r.state)
                }
                _ => {}
            }
        }
    }
}

/// A worker running as a task of this test process.
pub struct Worker {
    trigger: ShutdownTrigger,
    task: tokio::task::JoinHandle<()>,
}

impl Worker {
    pub fn start(config: WorkerConfig) -> Self {
        let (trigger, shutdown) = Shutdown::new();
        let task = tokio::spawn(async move { worker::run(config, shutdown).await.unwrap() });
        Self { trigger, task }
    }

    /// SIGTERM-like: stop taking refunds, drain, return.
    pub async fn stop(self) {
        self.trigger.trigger();
        let _ = tokio::time::timeout(Duration::from_secs(15), self.task).await;
    }
}

pub fn otns(prefix: &str, n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("{prefix}{i}")).collect()
}
