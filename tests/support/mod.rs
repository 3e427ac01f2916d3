//! Helpers for end-to-end suites: the `qfrefund` binary as child processes (kill -9, SIGSTOP,
//! SIGCONT), a real redis-server, and the simulator over HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod webdriver;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ledger::{Ledger, LedgerConfig, State};
use qfpay_sim::args::{DEMO_APP_CODE, DEMO_CLIENT_KEY};

/// The `qfrefund` binary next to the test executable (`target/<profile>/qfrefund`), or `$QFREFUND_BIN`.
pub fn qfrefund_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("QFREFUND_BIN") {
        return p.into();
    }
    // Tests run from target/<profile>/deps/, binaries (the bench) from target/<profile>/.
    let exe = std::env::current_exe().expect("executable path");
    let dirs = [exe.parent(), exe.parent().and_then(|d| d.parent())];
    let found = dirs.into_iter().flatten().map(|d| d.join("qfrefund")).find(|b| b.exists());
    found.unwrap_or_else(|| {
        panic!("qfrefund not built next to {}: run `cargo build -p qfrefund` (make test does)", exe.display())
    })
}

/// Environment for a `qfrefund` process talking to `redis_url`, namespace `ns`, QFPay at `sim_url`.
pub fn env_for(redis_url: &str, ns: &str, sim_url: &str) -> HashMap<String, String> {
    [
        ("QFREFUND_REDIS_URL", redis_url),
        ("QFREFUND_NAMESPACE", ns),
        ("QFPAY_BASE_URL", sim_url),
        ("QFPAY_APP_CODE", DEMO_APP_CODE),
        ("QFPAY_CLIENT_KEY", DEMO_CLIENT_KEY),
        ("QFREFUND_QUIET_WINDOW", "off"),
        // Test Redis servers mostly run without AOF; tests about durability set it themselves.
        ("QFREFUND_REQUIRE_AOF", "off"),
        ("QFREFUND_RATE_PER_SEC", "100000"),
        ("QFREFUND_RATE_BURST", "100000"),
        ("QFREFUND_ENQUIRY_FIRST_MS", "100"),
        ("QFREFUND_BACKOFF_BASE_MS", "100"),
        ("QFREFUND_BACKOFF_CAP_MS", "500"),
        ("QFREFUND_RESUBMIT_BASE_MS", "100"),
        ("QFREFUND_RESUBMIT_CAP_MS", "500"),
        ("QFREFUND_NOT_FOUND_GRACE_MS", "3000"),
        ("QFREFUND_LEASE_MS", "3000"),
        ("QFREFUND_HTTP_TIMEOUT_MS", "2000"),
        ("QFREFUND_IDLE_WAIT_MS", "2000"),
        ("QFREFUND_HEARTBEAT_MS", "1000"),
        ("RUST_LOG", "info"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    // The shards this run's ledgers have (`make test` runs every suite with 1 and with 4).
    .chain([("QFREFUND_SHARDS".to_owned(), testkit::test_shards().to_string())])
    .collect()
}

/// A `qfrefund worker` child process, its output in a log file.
pub struct WorkerProcess {
    child: Option<Child>,
    pub log: PathBuf,
}

impl WorkerProcess {
    pub fn spawn(env: &HashMap<String, String>, log: PathBuf) -> Self {
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(qfrefund_bin())
            .arg("worker")
            .env_clear()
            .envs(env)
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        Self { child: Some(child), log }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill").arg(sig).arg(self.pid().to_string()).status().unwrap().success();
        assert!(ok, "kill {sig} {}", self.pid());
    }

    /// `kill -9`: a crash, mid-whatever.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGSTOP: a worker frozen with its connections open (GC pause, VM stall).
    pub fn stop(&self) {
        self.signal("-STOP");
    }

    pub fn cont(&self) {
        self.signal("-CONT");
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn terminate(&mut self) -> bool {
        let Some(mut c) = self.child.take() else { return false };
        let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = c.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
        false
    }

    /// Waits up to `timeout` for the process to exit by itself; its exit status, if it did.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill").arg("-CONT").arg(c.id().to_string()).status();
        }
        self.kill9();
    }
}

/// A ledger handle for assertions.
pub async fn ledger(redis_url: &str, ns: &str) -> Ledger {
    Ledger::connect(
        redis_url,
        LedgerConfig { namespace: ns.into(), ..LedgerConfig::default().with_shards(testkit::test_shards()) },
    )
    .await
    .unwrap()
}

/// Waits until the ledger holds `n` refunds in `state`; returns how long it took.
pub async fn wait_count(ledger: &Ledger, state: State, n: u64, timeout: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let counts = ledger.counts().await.unwrap();
        let got = counts.iter().find(|(s, _)| *s == state).map_or(0, |(_, c)| *c);
        if got >= n {
            return started.elapsed();
        }
        assert!(started.elapsed() < timeout, "only {got} of {n} {state} after {timeout:?}: {counts:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A scratch directory removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Self {
        let p = std::env::temp_dir().join(format!(
            "qfrefund-e2e-{name}-{}-{}",
            std::process::id(),
            qfpay::time::unix_now_ms()
        ));
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
    pub fn path(&self, f: &str) -> PathBuf {
        self.0.join(f)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Every key and value in a Redis, as text (for "the key is nowhere" checks).
pub async fn dump_redis(url: &str) -> String {
    let client = redis::Client::open(url).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(&mut con).await.unwrap();
    let mut out = String::new();
    for key in keys {
        let kind: String = redis::cmd("TYPE").arg(&key).query_async(&mut con).await.unwrap();
        let value: redis::Value = match kind.as_str() {
            "string" => redis::cmd("GET").arg(&key).query_async(&mut con).await.unwrap(),
            "hash" => redis::cmd("HGETALL").arg(&key).query_async(&mut con).await.unwrap(),
            "list" => redis::cmd("LRANGE").arg(&key).arg(0).arg(-1).query_async(&mut con).await.unwrap(),
            "set" => redis::cmd("SMEMBERS").arg(&key).query_async(&mut con).await.unwrap(),
            "zset" => {
                redis::cmd("ZRANGE").arg(&key).arg(0).arg(-1).arg("WITHSCORES").query_async(&mut con).await.unwrap()
            }
            "stream" => redis::cmd("XRANGE").arg(&key).arg("-").arg("+").query_async(&mut con).await.unwrap(),
            _ => redis::Value::Nil,
        };
        out.push_str(&key);
        out.push('\n');
        flatten(&value, &mut out);
    }
    out
}

fn flatten(v: &redis::Value, out: &mut String) {
    match v {
        redis::Value::BulkString(b) => {
            out.push_str(&String::from_utf8_lossy(b));
            out.push('\n');
        }
        redis::Value::SimpleString(s) => {
            out.push_str(s);
            out.push('\n');
        }
        redis::Value::Array(items) | redis::Value::Set(items) => items.iter().for_each(|i| flatten(i, out)),
        redis::Value::Map(pairs) => pairs.iter().for_each(|(k, v)| {
            flatten(k, out);
            flatten(v, out);
        }),
        other => out.push_str(&format!("{other:?}\n")),
    }
}
