//! In-process pipeline harness: a real redis-server, the simulator over HTTP, workers as tasks.

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ledger::{Ledger, LedgerConfig, NewRefund, Record, State};
use qfpay_sim::args::{DEMO_APP_CODE, DEMO_CLIENT_KEY, generated_syssn};
use qfrefund_worker::ShutdownTrigger;
use qfrefund_worker::{Merchant, Shutdown, WorkerConfig};
use testkit::{Faults, RedisServer, SimConfig, SimHandle, unique_namespace};

pub struct Env {
    pub redis: RedisServer,
    pub sim: SimHandle,
    pub ledger: Ledger,
    pub config: WorkerConfig,
}

/// Short timings so every path of the state machine runs in a test's time.
pub fn fast_config(redis_url: &str, sim_url: &str, namespace: &str) -> WorkerConfig {
    let mut c = WorkerConfig { redis_url: redis_url.into(), ..WorkerConfig::default() };
    c.ledger =
        LedgerConfig { namespace: namespace.into(), ..LedgerConfig::default().with_shards(testkit::test_shards()) };
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
    c.heartbeat = Duration::from_secs(1);
    c.idle_wait = Duration::from_secs(2);
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

    /// A connection of the test's own to this environment's Redis, to stage or inspect keys.
    pub async fn raw(&self) -> redis::aio::MultiplexedConnection {
        testkit::raw_connection(&self.redis.url()).await
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
        self.find(otn).await.unwrap()
    }

    /// The refund `otn` of the default merchant, else of whichever merchant has one (tests use
    /// each out_trade_no once).
    /// `None` also while Redis cannot be read (a test restarting it waits on).
    pub async fn find(&self, otn: &str) -> Option<Record> {
        if let Some(r) = self.ledger.get("default", otn).await.ok()? {
            return Some(r);
        }
        for state in State::ALL {
            let all = self.ledger.list(state, 0, 10_000).await.ok()?;
            if let Some(r) = all.into_iter().find(|r| r.out_trade_no == otn) {
                return Some(r);
            }
        }
        None
    }

    /// Waits until every refund is in one of `states`; panics with their states after `timeout`.
    pub async fn wait_for(&self, otns: &[String], states: &[State], timeout: Duration) -> Vec<Record> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut recs = Vec::new();
            for o in otns {
                recs.push(self.find(o).await);
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
        let task = tokio::spawn(async move { qfrefund_worker::run(config, shutdown).await.unwrap() });
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

/// What a webhook receiver got: (event id header, signature header, raw body, the Standard
/// Webhooks headers), in arrival order.
pub type Received = std::sync::Arc<std::sync::Mutex<Vec<(String, String, Vec<u8>, Standard)>>>;

/// The Standard Webhooks headers of a delivery, and its `User-Agent`.
#[derive(Debug, Clone, Default)]
pub struct Standard {
    pub id: String,
    pub timestamp: String,
    pub signature: String,
    pub user_agent: String,
}

/// A webhook receiver on loopback that accepts every request (200) and keeps it.
pub async fn hook_receiver() -> (String, Received) {
    hook_receiver_failing(0).await
}

/// A webhook receiver on loopback: answers 500 to the first `fail_first` requests, then 200, and
/// keeps every request it got.
pub async fn hook_receiver_failing(fail_first: usize) -> (String, Received) {
    use axum::http::{HeaderMap, StatusCode};
    let got: Received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let seen = seen.clone();
            async move {
                let h = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                let mut g = seen.lock().unwrap();
                let standard = Standard {
                    id: h("webhook-id"),
                    timestamp: h("webhook-timestamp"),
                    signature: h("webhook-signature"),
                    user_agent: h("user-agent"),
                };
                g.push((h("x-qfrefund-event-id"), h("x-qfrefund-signature"), body.to_vec(), standard));
                if g.len() <= fail_first { StatusCode::INTERNAL_SERVER_ERROR } else { StatusCode::OK }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, got)
}

/// The out_trade_no of every delivery received so far, once each.
pub fn delivered_otns(got: &Received) -> std::collections::BTreeSet<String> {
    got.lock()
        .unwrap()
        .iter()
        .filter_map(|(_, _, body, _)| serde_json::from_slice::<serde_json::Value>(body).ok())
        .filter_map(|v| v["out_trade_no"].as_str().map(str::to_owned))
        .collect()
}

/// Waits until deliveries for every one of `otns` arrived; panics with what did after `timeout`.
pub async fn wait_delivered(got: &Received, otns: &[String], timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let seen = delivered_otns(got);
        if otns.iter().all(|o| seen.contains(o)) {
            return;
        }
        assert!(Instant::now() < deadline, "{} of {} delivered after {timeout:?}: {seen:?}", seen.len(), otns.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `config` with the default merchant's webhook pointing at `url` and fast retries.
pub fn with_hook(mut config: WorkerConfig, url: &str, name: &str) -> WorkerConfig {
    if let Some(m) = config.merchants.get_mut("default") {
        m.webhook = Some(qfrefund_worker::webhooks::Webhook::new(url, "whsec-test-0123456789").unwrap());
    }
    config.webhooks.retry_base = Duration::from_millis(100);
    config.webhooks.retry_cap = Duration::from_millis(400);
    config.worker_name = name.into();
    config
}

/// `config` for a worker that holds a webhook, but only for another merchant ("other", with the
/// simulator's credentials): it runs the webhook dispatcher without holding the default's hook.
pub fn with_other_hook(mut config: WorkerConfig, url: &str, name: &str) -> WorkerConfig {
    let mut other = config.merchants["default"].clone();
    other.name = "other".into();
    other.app_code = "OTHERAPP".into();
    other.webhook = Some(qfrefund_worker::webhooks::Webhook::new(url, "whsec-other-0123456789").unwrap());
    config.merchants.insert("other".into(), other);
    if let Some(m) = config.merchants.get_mut("default") {
        m.webhook = None;
    }
    config.worker_name = name.into();
    config
}

/// Waits until a worker has created `merchant`'s webhook consumer group: it starts at the end of
/// the stream, so outcomes written before it are not its to deliver.
pub async fn wait_group(env: &Env, merchant: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    let key = env.ledger.keys_for(merchant).events();
    loop {
        let groups: redis::RedisResult<redis::streams::StreamInfoGroupsReply> =
            redis::cmd("XINFO").arg("GROUPS").arg(&key).query_async(&mut env.raw().await).await;
        if groups.is_ok_and(|g| g.groups.iter().any(|g| g.name == format!("webhooks:{merchant}"))) {
            return;
        }
        assert!(Instant::now() < deadline, "no webhook group for {merchant} after 15 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every entry of the outcome stream, oldest first, as (id, fields).
pub async fn stream(env: &Env) -> Vec<(String, Vec<(String, String)>)> {
    let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(env.ledger.keys_for("default").events())
        .arg("-")
        .arg("+")
        .query_async(&mut env.raw().await)
        .await
        .unwrap();
    reply
        .ids
        .into_iter()
        .map(|e| {
            let f = e.map.into_iter().map(|(k, v)| (k, redis::from_redis_value::<String>(v).unwrap()));
            (e.id, f.collect())
        })
        .collect()
}

/// Adds an entry with these fields to the outcome stream, as a transition would.
pub async fn xadd(env: &Env, fields: &[(String, String)]) {
    let _: String = redis::cmd("XADD")
        .arg(env.ledger.keys_for("default").events())
        .arg("*")
        .arg(fields)
        .query_async(&mut env.raw().await)
        .await
        .unwrap();
}
