//! The ledger in Redis: the only code that speaks to it. Every operation that changes a refund is
//! one Lua script, kept beside the Rust file that calls it, so each is atomic; the Rust side only
//! marshals named arguments and typed replies.
//!
//! This module holds [`Ledger`] itself (connection, clock, durability); the operations live in
//! files of their own: `enqueue` (+ `batch`), `claim` and `fetch` (claim one / claim what is due),
//! `transition` (transition, defer, set_paid, rate limit), `due` (the due-index and wake-ups),
//! `operator` (operator actions, audit trail), `reads`, `stats`, `merchants`, `pause`, `ready`
//! and `server` (what the Redis server offers), `streams` (consumer groups on the outcome stream:
//! create, position, read, take over, acknowledge), `webhooks` (the webhook retry and failed
//! schedules), `script` and `args` (the scripts and their arguments), `durable` (WAIT/WAITAOF),
//! `conn` and `keys`. The ledger lends its connections to no other crate: whatever touches one of
//! its keys is an operation here.

pub(crate) mod args;
pub mod batch;
pub(crate) mod claim;
pub(crate) mod conn;
pub(crate) mod due;
pub mod durable;
pub(crate) mod enqueue;
pub(crate) mod fetch;
pub mod gauges;
pub mod keys;
pub mod merchants;
pub(crate) mod operator;
pub mod outcome;
pub mod pause;
pub(crate) mod reads;
pub mod ready;
pub(crate) mod script;
pub(crate) mod server;
pub(crate) mod stats;
pub(crate) mod streams;
pub(crate) mod transition;
pub(crate) mod webhooks;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use redis::Script;
use redis::aio::ConnectionManagerConfig;

use self::conn::{Endpoint, RedisConn};
use self::durable::Durability;
use self::keys::Keys;

pub use crate::error::LedgerError;
pub use crate::store::claim::{Claim, ClaimOptions, Deferral, RefundRef, Skipped};
pub use crate::store::enqueue::{Accepted, Enqueued};
pub use crate::store::operator::{AuditEntry, Operation, Refusal};
pub use crate::store::reads::PageCursor;
pub use crate::store::server::ServerInfo;
pub use crate::store::stats::Stats;
pub use crate::store::streams::StreamReader;
pub use crate::store::webhooks::{DueWebhook, FailedWebhook, WebhookAttempt};

/// Where the ledger lives.
#[derive(Debug, Clone)]
pub struct LedgerConfig {
    pub namespace: String,
    /// Redis Cluster hash tag shared by every key.
    pub tag: String,
    /// Approximate cap of the outcome stream's length.
    pub events_maxlen: u64,
    /// A Redis command that takes longer fails (the connection is then re-established).
    pub response_timeout: Duration,
    /// PEM file of the CA that signed the Redis server's certificate, for `rediss://` URLs with a
    /// private CA (the system's roots are used otherwise).
    pub tls_ca_file: Option<std::path::PathBuf>,
    /// Replicas that must hold an enqueue, and a claim before its refund is sent (`WAIT`), so
    /// that a failover cannot lose them (Redis replicates asynchronously). 0: none (one Redis).
    pub wait_replicas: usize,
    /// How long to wait for them; past it, an enqueue answers "not replicated, retry" and a
    /// claim is not sent (its lease expires and it is tried again).
    pub wait_timeout: Duration,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        Self {
            namespace: "qfrefund".into(),
            tag: "default".into(),
            events_maxlen: 1_000_000,
            response_timeout: Duration::from_secs(5),
            tls_ca_file: None,
            wait_replicas: 0,
            wait_timeout: Duration::from_secs(1),
        }
    }
}

/// The Redis store of one ledger.
#[derive(Clone)]
pub struct Ledger {
    pub(crate) con: RedisConn,
    pub(crate) keys: Keys,
    pub(crate) config: LedgerConfig,
    /// Redis' clock minus ours (ms): leases and schedules use Redis' time, so workers whose clocks
    /// disagree still agree on when a lease ends.
    clock_offset: Arc<AtomicI64>,
    /// See [`Ledger::fsyncs_on_demand`].
    local_aof: Arc<AtomicBool>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger").field("prefix", &self.keys.prefix()).finish_non_exhaustive()
    }
}

impl Ledger {
    /// Connects (and keeps reconnecting, with backoff, whenever Redis goes away; with a
    /// `redis+sentinel://` URL it follows the primary through failovers, see [`crate::store::conn`]).
    pub async fn connect(url: &str, config: LedgerConfig) -> Result<Self, LedgerError> {
        let endpoint = Endpoint::parse(url, config.tls_ca_file.as_deref())?;
        let con = RedisConn::connect(endpoint, Self::connection_config(&config)).await?;
        let ledger = Self {
            con,
            keys: Keys::new(&config.namespace, &config.tag),
            config,
            clock_offset: Arc::default(),
            local_aof: Arc::default(),
        };
        ledger.sync_clock().await?;
        match ledger.server_info().await {
            Ok(info) => ledger.local_aof.store(info.waitaof && info.aof_enabled, Ordering::Relaxed),
            // INFO refused (a locked-down managed Redis): no WAITAOF, as on Redis < 7.2.
            Err(e) => tracing::warn!(error = %e, "cannot read Redis INFO: enqueues rely on appendfsync for durability"),
        }
        Ok(ledger)
    }

    /// What a write must reach before it counts: the configured replicas, and the local AOF when
    /// `local_aof` (see [`crate::store::durable`]: the wait always shares the write's pipeline).
    pub fn durability(&self, local_aof: bool) -> Durability {
        Durability {
            local_aof,
            replicas: self.config.wait_replicas,
            timeout_ms: self.config.wait_timeout.as_millis() as u64,
        }
    }

    /// The one small, expiring key the ledger writes to learn something about Redis rather than
    /// a refund: each durability wait writes it first (see [`crate::store::durable`]), readiness writes
    /// it to see whether Redis takes writes now. Under the ledger's tag.
    pub(crate) fn probe_key(&self) -> String {
        self.keys.probe()
    }

    /// Waits until everything Redis has applied so far is durable (AOF and/or replicas, as
    /// configured), on one connection: for a record found in the ledger whose own write was never
    /// confirmed. `Ok(true)` at once when nothing is configured.
    pub async fn durable_now(&self) -> Result<bool, LedgerError> {
        let d = self.durability(self.fsyncs_on_demand());
        Ok(durable::now(&mut self.con.clone(), &d, &self.probe_key()).await?)
    }

    /// After a wait that failed: the server may have changed under us (a failover to a primary
    /// without AOF answers `WAITAOF` with an error). Re-reads whether it fsyncs on demand.
    pub(crate) async fn recheck_fsync(&self) {
        if !self.fsyncs_on_demand() {
            return;
        }
        if let Ok(info) = self.server_info().await {
            let on = info.waitaof && info.aof_enabled;
            if !on {
                tracing::warn!(
                    "Redis no longer fsyncs on demand (WAITAOF): enqueues and claims now rely on appendfsync"
                );
            }
            self.local_aof.store(on, Ordering::Relaxed);
        }
    }

    /// Whether this Redis fsyncs on demand (`WAITAOF`, Redis ≥ 7.2 with AOF on), as read at
    /// connect: enqueues then wait for their write to reach the disk before they are accepted.
    pub fn fsyncs_on_demand(&self) -> bool {
        self.local_aof.load(Ordering::Relaxed)
    }

    /// Now, by Redis' clock (ms since the epoch).
    pub fn now_ms(&self) -> i64 {
        qfpay::time::unix_now_ms() + self.clock_offset.load(Ordering::Relaxed)
    }

    /// Re-reads Redis' clock (call now and then: clocks drift).
    pub async fn sync_clock(&self) -> Result<i64, LedgerError> {
        let before = qfpay::time::unix_now_ms();
        let (secs, micros): (i64, i64) = redis::cmd("TIME").query_async(&mut self.con.clone()).await?;
        let after = qfpay::time::unix_now_ms();
        let offset = secs * 1000 + micros / 1000 - (before + after) / 2;
        self.clock_offset.store(offset, Ordering::Relaxed);
        Ok(offset)
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Where and how this ledger was configured.
    pub fn config(&self) -> &LedgerConfig {
        &self.config
    }

    /// A connection handle (cheap to clone) for the operations' plain commands.
    pub(crate) fn connection(&self) -> RedisConn {
        self.con.clone()
    }

    /// A second, independent connection to the same Redis (for a blocking read, which would
    /// hold up every other command on the shared one).
    pub(crate) async fn connect_again(&self) -> Result<RedisConn, LedgerError> {
        Ok(RedisConn::connect(self.con.endpoint().clone(), Self::connection_config(&self.config)).await?)
    }

    fn connection_config(config: &LedgerConfig) -> ConnectionManagerConfig {
        ConnectionManagerConfig::new()
            .set_response_timeout(Some(config.response_timeout))
            .set_connection_timeout(Some(Duration::from_secs(3)))
            .set_number_of_retries(3)
            .set_max_delay(Duration::from_secs(2))
    }

    /// An invocation of a record script with its KEYS (see `lua/common.lua`) already set.
    pub(crate) fn on_record<'a>(
        &self,
        script: &'a Script,
        out_trade_no: &str,
        syssn: &str,
    ) -> redis::ScriptInvocation<'a> {
        let mut inv = script.prepare_invoke();
        for k in self.keys.script_keys(out_trade_no, syssn) {
            inv.key(k);
        }
        inv
    }

    /// Tells idle workers there is work (they wait on this channel instead of polling).
    pub(crate) async fn wake(&self) {
        let _: Result<(), _> =
            redis::cmd("PUBLISH").arg(self.keys.wake()).arg(1).query_async(&mut self.con.clone()).await;
    }

    /// Whether Redis answers.
    pub async fn ping(&self) -> Result<(), LedgerError> {
        let _: String = redis::cmd("PING").query_async(&mut self.con.clone()).await?;
        Ok(())
    }
}
