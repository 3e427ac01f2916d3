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

pub mod approvals;
pub(crate) mod archiver;
pub(crate) mod args;
pub mod batch;
pub(crate) mod claim;
pub mod cluster;
pub(crate) mod conn;
pub(crate) mod due;
pub mod durable;
pub(crate) mod enqueue;
pub mod evidence;
pub(crate) mod fetch;
pub mod fresh;
pub mod keys;
pub mod memory;
pub mod merchants;
pub(crate) mod operator;
pub mod outcome;
pub mod pause;
pub(crate) mod reads;
pub mod ready;
pub mod retention;
pub(crate) mod script;
pub mod search;
pub(crate) mod server;
pub mod sessions;
pub mod shards;
pub(crate) mod stats;
pub(crate) mod streams;
pub mod summary;
pub(crate) mod tombstones;
pub(crate) mod transition;
pub mod trim;
pub(crate) mod webhooks;
pub mod workers;

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
    /// Redis Cluster hash tag of the ledger: every key of a ledger of one shard carries it; with
    /// more shards, shard i's keys carry `<tag>-<i>` (see [`keys`]).
    pub tag: String,
    /// How many shards the ledger is split into (each its own hash tag, so Redis Cluster spreads
    /// them over its primaries), and the merchants placed on a shard by hand.
    pub placement: crate::refund::placement::Placement,
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
    /// Record this process's shard count and pins in a ledger that has none yet (see
    /// `store::shards`). Off for a process that only reads: it checks, and leaves the first
    /// word to the workers and producers.
    pub record_layout: bool,
}

impl LedgerConfig {
    /// The smallest `events_maxlen`: the cap drops entries whether or not a webhook delivered them.
    pub const MIN_EVENTS_MAXLEN: u64 = 100_000;

    /// What is odd about the ledger's names, said as warnings rather than refused: a ledger laid
    /// out under such a name works (a brace moves Redis Cluster's hash tag onto it, so every
    /// shard shares one slot), and refusing it would strand the refunds it holds.
    pub fn name_warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (setting, value) in [("namespace", &self.namespace), ("queue_tag", &self.tag)] {
            if value.is_empty() || value.contains(['{', '}']) || value.chars().any(char::is_whitespace) {
                out.push(format!(
                    "{setting} {value:?} is empty or holds braces or spaces: with Redis Cluster a brace (or an empty \
                     queue_tag) moves the hash tag, so the ledger's shards share one slot, or its scripts fail CROSSSLOT; \
                     choose another for a new ledger"
                ));
            }
        }
        out
    }

    /// Refuses what would fail later and obscurely: `WAIT` with a timeout of 0 blocks for ever, a
    /// response timeout under what Redis may take to answer fails every such command, a small
    /// stream cap drops outcomes unannounced.
    pub fn validate(&self) -> Result<(), String> {
        if self.wait_timeout.is_zero() || self.wait_timeout > Duration::from_secs(60) {
            return Err(format!(
                "redis_wait_timeout_ms must be 1..=60000 (got {}): Redis' WAIT with 0 waits for ever",
                self.wait_timeout.as_millis()
            ));
        }
        // The webhook reader blocks up to a second in Redis, and a durable write waits up to
        // `wait_timeout` there: a command timeout shorter than either fails them every time.
        let floor = (self.wait_timeout + Duration::from_millis(500)).max(Duration::from_millis(1_500));
        if self.response_timeout < floor {
            return Err(format!(
                "redis_response_timeout_ms must be at least {} (got {}): the larger of 1500 and redis_wait_timeout_ms + 500, \
                 or blocking reads and durable writes would time out every time",
                floor.as_millis(),
                self.response_timeout.as_millis()
            ));
        }
        if self.events_maxlen < Self::MIN_EVENTS_MAXLEN {
            return Err(format!(
                "events_maxlen must be at least {} (got {}): entries past it are dropped whether or not their webhook was delivered",
                Self::MIN_EVENTS_MAXLEN,
                self.events_maxlen
            ));
        }
        Ok(())
    }
}

/// Whether `url` is a Redis URL a ledger can connect to (checked without connecting): the reason
/// when it is not, which never repeats the URL (it may hold a password).
pub fn check_redis_url(url: &str) -> Result<(), String> {
    const FORMS: &str = "expected redis://host:port[/db], rediss://host:port (TLS), \
                         redis+sentinel://host:26379[,host:26379]/<service> or redis+cluster://host:port[,host:port]";
    if !url.contains("://") {
        return Err(format!("{FORMS}; the scheme is missing"));
    }
    match Endpoint::parse(url, None) {
        Ok(_) => Ok(()),
        Err(LedgerError::Redis(e)) => Err(format!("{FORMS}; {}", e.detail().unwrap_or("it did not parse"))),
        Err(e) => Err(format!("{FORMS}; {e}")),
    }
}

impl Default for LedgerConfig {
    fn default() -> Self {
        Self {
            namespace: "qfrefund".into(),
            tag: "default".into(),
            placement: crate::refund::placement::Placement::default(),
            events_maxlen: 1_000_000,
            response_timeout: Duration::from_secs(5),
            tls_ca_file: None,
            wait_replicas: 0,
            wait_timeout: Duration::from_secs(1),
            record_layout: true,
        }
    }
}

impl LedgerConfig {
    /// This configuration with `shards` shards and no merchant pinned (a count out of range is
    /// taken as the nearest one allowed).
    pub fn with_shards(mut self, shards: usize) -> Self {
        let n = shards.clamp(1, crate::refund::placement::MAX_SHARDS);
        if let Ok(p) = crate::refund::placement::Placement::new(n, Default::default()) {
            self.placement = p;
        }
        self
    }
}

/// The Redis store of one ledger.
#[derive(Clone)]
pub struct Ledger {
    pub(crate) con: RedisConn,
    /// Every shard's keys, by shard number.
    pub(crate) shards: Arc<[Keys]>,
    pub(crate) config: LedgerConfig,
    /// Redis' clock minus ours (ms): leases and schedules use Redis' time, so workers whose clocks
    /// disagree still agree on when a lease ends.
    clock_offset: Arc<AtomicI64>,
    /// See [`Ledger::fsyncs_on_demand`].
    local_aof: Arc<AtomicBool>,
    /// See [`Ledger::compact_queue`], and when it was last read (ms).
    compact_queue: Arc<AtomicBool>,
    compact_read_at: Arc<AtomicI64>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("shard0", &self.shards[0].prefix())
            .field("shards", &self.shards.len())
            .finish_non_exhaustive()
    }
}

impl Ledger {
    /// Connects (and keeps reconnecting, with backoff, whenever Redis goes away; with a
    /// `redis+sentinel://` URL it follows the primary through failovers, see [`crate::store::conn`]).
    pub async fn connect(url: &str, config: LedgerConfig) -> Result<Self, LedgerError> {
        let endpoint = Endpoint::parse(url, config.tls_ca_file.as_deref())?;
        let con = RedisConn::connect(endpoint, Self::connection_config(&config), config.response_timeout).await?;
        let n = config.placement.shards();
        let shards: Arc<[Keys]> = (0..n).map(|i| Keys::for_shard(&config.namespace, &config.tag, i, n)).collect();
        let ledger = Self {
            con,
            shards,
            config,
            clock_offset: Arc::default(),
            local_aof: Arc::default(),
            compact_queue: Arc::default(),
            compact_read_at: Arc::default(),
        };
        ledger.sync_clock().await?;
        ledger.check_layout().await?;
        ledger.compact_queue_enabled().await?;
        ledger.compact_read_at.store(ledger.now_ms(), Ordering::Relaxed);
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
    /// it to see whether Redis takes writes now. Under the shard's tag: the wait must follow the
    /// write it covers on the same server.
    pub(crate) fn probe_key(&self, shard: usize) -> String {
        self.shard_keys(shard).probe()
    }

    /// Waits until everything Redis has applied so far is durable (AOF and/or replicas, as
    /// configured), on one connection: for a record found in the ledger whose own write was never
    /// confirmed. `Ok(true)` at once when nothing is configured.
    pub async fn durable_now(&self) -> Result<bool, LedgerError> {
        let d = self.durability(self.fsyncs_on_demand());
        for shard in 0..self.shard_count() {
            if !durable::now(&mut self.con.clone(), &d, &self.probe_key(shard)).await? {
                return Ok(false);
            }
        }
        Ok(true)
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

    /// How many shards the ledger has.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// The shard of `merchant`'s refunds.
    pub fn shard_of(&self, merchant: &str) -> usize {
        self.config.placement.shard_of(merchant)
    }

    /// The keys of shard `shard` (panics past [`Ledger::shard_count`]: shard numbers come from
    /// the ledger itself).
    pub fn shard_keys(&self, shard: usize) -> &Keys {
        &self.shards[shard]
    }

    /// The keys of `merchant`'s shard.
    pub fn keys_for(&self, merchant: &str) -> &Keys {
        self.shard_keys(self.shard_of(merchant))
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
        Ok(RedisConn::connect(
            self.con.endpoint().clone(),
            Self::connection_config(&self.config),
            self.config.response_timeout,
        )
        .await?)
    }

    fn connection_config(config: &LedgerConfig) -> ConnectionManagerConfig {
        ConnectionManagerConfig::new()
            .set_response_timeout(Some(config.response_timeout))
            .set_connection_timeout(Some(Duration::from_secs(3)))
            .set_number_of_retries(3)
            .set_max_delay(Duration::from_secs(2))
    }

    /// An invocation of a record script with its KEYS (see `lua/common.lua`) already set.
    /// The record's id and payment are those of `merchant`'s shard.
    pub(crate) fn on_record<'a>(
        &self,
        script: &'a Script,
        merchant: &str,
        id: &str,
        syssn: &str,
    ) -> redis::ScriptInvocation<'a> {
        let mut inv = script.prepare_invoke();
        for k in self.keys_for(merchant).script_keys(id, syssn) {
            inv.key(k);
        }
        inv
    }

    /// Tells idle workers there is work in `shard` (they wait on its channel instead of polling).
    pub(crate) async fn wake(&self, shard: usize) {
        let _: Result<(), _> =
            redis::cmd("PUBLISH").arg(self.shard_keys(shard).wake()).arg(1).query_async(&mut self.con.clone()).await;
    }

    /// Whether Redis answers.
    pub async fn ping(&self) -> Result<(), LedgerError> {
        let _: String = redis::cmd("PING").query_async(&mut self.con.clone()).await?;
        Ok(())
    }
}
