//! The ledger in Redis. Every operation that changes a refund is one Lua script (see `lua/`), so
//! each is atomic; this file only marshals arguments and results.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use qfpay::FieldError;
use redis::aio::ConnectionManagerConfig;

use crate::conn::{Endpoint, RedisConn};
use crate::durable::{self, Durability};
use redis::{AsyncCommands, Script};

use crate::events::Event;
use crate::keys::Keys;
use crate::machine::Decision;
use crate::producer::NewRefund;
use crate::record::{CorruptRecord, Record};
use crate::schedule::Policy;
use crate::state::State;

macro_rules! record_script {
    ($file:literal) => {
        LazyLock::new(|| Script::new(concat!(include_str!("lua/common.lua"), "\n", include_str!($file))))
    };
}

static ENQUEUE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("lua/common.lua"),
        "\n",
        include_str!("lua/enqueue_one.lua"),
        "\n",
        include_str!("lua/enqueue.lua")
    ))
});
static ENQUEUE_MANY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("lua/common.lua"),
        "\n",
        include_str!("lua/enqueue_one.lua"),
        "\n",
        include_str!("lua/enqueue_many.lua")
    ))
});
/// Refunds per `enqueue_many` call: large enough to spread the per-call cost, small enough that
/// one call holds Redis for well under a millisecond.
const ENQUEUE_PER_CALL: usize = 100;
static CLAIM: LazyLock<Script> = record_script!("lua/claim.lua");
static TRANSITION: LazyLock<Script> = record_script!("lua/transition.lua");
static DEFER: LazyLock<Script> = record_script!("lua/defer.lua");
static SET_PAID: LazyLock<Script> = record_script!("lua/set_paid.lua");
static OPERATE: LazyLock<Script> = record_script!("lua/operate.lua");
static EXPEDITE: LazyLock<Script> = record_script!("lua/expedite.lua");
static PAGE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/page.lua")));
static FEED: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/feed.lua")));
static RATE_LIMIT: LazyLock<Script> = record_script!("lua/rate_limit.lua");

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

/// What can go wrong in the ledger.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerError {
    #[error("invalid refund: {0}")]
    Invalid(#[from] FieldError),
    /// The primary took the write but too few replicas confirmed it in time: a failover now could
    /// lose it. Enqueueing again is safe (idempotent) and is how to make sure.
    #[error(
        "the write was not confirmed durable (AOF fsync and/or {0} Redis replica(s)) in time: outcome unknown, \
         retry the same request (it is idempotent)"
    )]
    NotReplicated(usize),
    /// The `out_trade_no` exists with another payload: a conflict, never a second refund.
    #[error("out_trade_no {out_trade_no} already exists with a different request: {}", differences.join("; "))]
    Conflict { out_trade_no: String, differences: Vec<String>, existing: Box<Record> },
    #[error("orig_txamt {given} disagrees with {recorded} recorded for payment {syssn}")]
    PaidMismatch { syssn: String, recorded: String, given: u64 },
    #[error(transparent)]
    Corrupt(#[from] CorruptRecord),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("unexpected answer from a ledger script: {0}")]
    Script(String),
    /// The script ran (the refund is recorded, durable as configured), but reading the record back
    /// failed. The same request again answers with the record.
    #[error("the refund was recorded, but reading it back failed ({0}): retry the same request (it is idempotent)")]
    Unread(String),
    #[error("Redis TLS CA file {path}: {error}")]
    TlsCa { path: String, error: String },
}

/// A Redis client for the server to talk to now: `url` is `redis://`, `rediss://` (TLS, trusting
/// `tls_ca_file` when given) or `redis+sentinel://` (the current primary).
pub async fn redis_client(url: &str, tls_ca_file: Option<&std::path::Path>) -> Result<redis::Client, LedgerError> {
    Ok(Endpoint::parse(url, tls_ca_file)?.client().await?.1)
}

/// What a batch enqueue did with one accepted line (no record is read back: imports stay one
/// round trip per chunk).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    Created,
    /// The same request was enqueued before; nothing changed.
    Duplicate,
}

/// The result of an accepted enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enqueued {
    Created(Record),
    /// The same request was enqueued before: this is that record, unchanged.
    Duplicate(Record),
}

impl Enqueued {
    pub fn record(&self) -> &Record {
        match self {
            Enqueued::Created(r) | Enqueued::Duplicate(r) => r,
        }
    }
}

/// What a claim gave the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Send it: the lease is ours under `fence`, `submitting` is persisted; `record` is the record
    /// as claimed (its `txdtm` is the one to send).
    /// `durable`: the claim reached what [`ClaimOptions::durable_local`] and the configured replicas
    /// ask for, on the connection that wrote it. Send nothing unless it did.
    Submit { fence: u64, record: Box<Record>, durable: bool },
    /// Enquire it under `fence`; `record` is the record as claimed.
    Enquire { fence: u64, record: Box<Record>, durable: bool },
    /// It waited (paused merchant, busy payment) past its maximum age: now `needs_review`.
    Blocked(String),
    /// The payment's amount is unknown: learn it, then claim again.
    NeedPaid,
    /// It would exceed what was paid: it is now `failed`, never sent.
    Failed(String),
    /// Not now: moved to `next_at` (paused merchant, payment busy).
    Deferred { why: String, next_at: i64 },
    /// Nothing to do: someone holds it, it is not due, it is final, or it waits for a person.
    Skip(String),
    /// The record's payment or merchant is not the one the caller named: nothing was written;
    /// read the record and claim again with its own.
    Mismatch,
}

/// Names a refund the way a claim needs it: its keys (the payment's, the merchant's token bucket)
/// are derived from these, so the claim can read the record itself in the same round trip.
/// Workers get it from the job the feeder wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundRef {
    pub out_trade_no: String,
    pub syssn: String,
    pub merchant: String,
}

impl From<&Record> for RefundRef {
    fn from(r: &Record) -> Self {
        Self { out_trade_no: r.out_trade_no.clone(), syssn: r.syssn.clone(), merchant: r.merchant.clone() }
    }
}

/// Where a page of a state listing ended: the next page starts after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageCursor {
    pub score: i64,
    pub member: String,
}

impl PageCursor {
    /// An opaque token for clients (`<score>.<member>`; members never contain a control char).
    pub fn encode(&self) -> String {
        format!("{}.{}", self.score, self.member)
    }

    pub fn decode(s: &str) -> Option<Self> {
        let (score, member) = s.split_once('.')?;
        Some(Self { score: score.parse().ok()?, member: member.to_owned() })
    }
}

/// One operator action, as the audit trail keeps it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditEntry {
    pub id: String,
    /// Empty for a merchant's pause or resume.
    pub out_trade_no: String,
    /// The merchant paused or resumed (empty for an action on a refund).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub merchant: String,
    pub action: String,
    pub who: String,
    pub why: String,
    pub from: String,
    pub to: String,
    /// `ok`, or `refused: <why>`.
    pub outcome: String,
    pub at: i64,
}

impl AuditEntry {
    fn from_fields(id: String, mut f: HashMap<String, String>) -> Self {
        let mut take = |k: &str| f.remove(k).unwrap_or_default();
        Self {
            id,
            out_trade_no: take("out_trade_no"),
            merchant: take("merchant"),
            action: take("action"),
            who: take("who"),
            why: take("why"),
            from: take("from"),
            to: take("to"),
            outcome: take("outcome"),
            at: take("at").parse().unwrap_or(0),
        }
    }
}

/// The ledger at a glance.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    pub by_state: Vec<(State, u64)>,
    /// How long the oldest non-final refund has been in its current state (ms).
    pub oldest_open_age_ms: Option<i64>,
    /// Refunds in the due-index (due now or later).
    pub due_total: u64,
    /// Refunds due now: the backlog workers have not picked up yet.
    pub due_now: u64,
    /// Paused merchants and why.
    pub paused: HashMap<String, String>,
    /// Webhook deliveries given up (see `qfrefund webhooks`).
    pub webhooks_failed: u64,
    /// Webhook deliveries waiting for a retry.
    pub webhooks_retrying: u64,
}

impl Stats {
    /// The ledger's gauges in Prometheus' text format: every process that serves metrics (API,
    /// workers) renders the same values, read from Redis at scrape time.
    pub fn to_prometheus(&self, out: &mut String) {
        use std::fmt::Write as _;
        let mut gauge = |name: &str, help: &str, lines: Vec<(String, String)>| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            for (labels, v) in lines {
                let _ = writeln!(out, "{name}{labels} {v}");
            }
        };
        gauge(
            "qfrefund_refunds",
            "Refunds in each state (final states count every refund ever settled).",
            self.by_state.iter().map(|(s, n)| (format!("{{state=\"{s}\"}}"), n.to_string())).collect(),
        );
        gauge(
            "qfrefund_due_backlog",
            "Refunds due now that no worker has picked up yet.",
            vec![(String::new(), self.due_now.to_string())],
        );
        gauge(
            "qfrefund_scheduled",
            "Refunds waiting in the due-index (now or later).",
            vec![(String::new(), self.due_total.to_string())],
        );
        gauge(
            "qfrefund_oldest_open_seconds",
            "How long the oldest non-final refund has been in its current state.",
            vec![(String::new(), format!("{:.3}", self.oldest_open_age_ms.unwrap_or(0) as f64 / 1000.0))],
        );
        gauge(
            "qfrefund_paused_merchants",
            "Merchants whose submits are paused.",
            vec![(String::new(), self.paused.len().to_string())],
        );
        gauge(
            "qfrefund_webhooks_failed",
            "Webhook deliveries given up (see `qfrefund webhooks`).",
            vec![(String::new(), self.webhooks_failed.to_string())],
        );
        gauge(
            "qfrefund_webhooks_retrying",
            "Webhook deliveries waiting for a retry.",
            vec![(String::new(), self.webhooks_retrying.to_string())],
        );
    }
}

/// What a worker brings to a claim besides the refund.
#[derive(Debug, Clone, Copy)]
pub struct ClaimOptions<'a> {
    pub worker: &'a str,
    pub policy: &'a Policy,
    /// The `txdtm` a first submit records (and sends).
    pub txdtm: &'a str,
    /// Answer [`Claim::NeedPaid`] (after taking a token for that enquiry) when the payment's
    /// amount is unknown.
    pub want_paid: bool,
    /// No submit before this time (ms; 0: none): QFPay's nightly window.
    pub submit_not_before: i64,
    /// The merchant's token bucket (rate per second, burst); `None`: no limit. A token is taken
    /// only when the claim hands out a request to send.
    pub rate: Option<(f64, u32)>,
    /// Wait for the claim to reach the local AOF (`WAITAOF`) before it counts as durable.
    pub durable_local: bool,
}

/// The Redis store of one ledger.
#[derive(Clone)]
pub struct Ledger {
    con: RedisConn,
    keys: Keys,
    config: LedgerConfig,
    /// Redis' clock minus ours (ms): leases and schedules use Redis' time, so workers whose clocks
    /// disagree still agree on when a lease ends.
    clock_offset: Arc<AtomicI64>,
    /// See [`Ledger::fsyncs_on_demand`].
    local_aof: Arc<AtomicBool>,
}

/// What the Redis server offers and how it is set up, as far as the ledger cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    pub version: String,
    pub aof_enabled: bool,
    pub maxmemory_policy: String,
    /// `WAITAOF` exists (Redis ≥ 7.2): a claim can be made durable before anything is sent.
    pub waitaof: bool,
    /// `appendfsync` (`CONFIG GET`; `None` where a managed Redis refuses `CONFIG`).
    pub appendfsync: Option<String>,
    /// Replicas connected to this primary (`INFO replication` `connected_slaves`).
    pub connected_replicas: usize,
}

impl ServerInfo {
    /// Why qfrefund must not run against this Redis, if it must not: an evicting memory policy
    /// (refund records and indexes silently dropped under memory pressure), or, when `require_aof`,
    /// no append-only file (a restart would forget claims, i.e. which refunds were already sent).
    /// Redis older than 7.0 lacks commands the ledger uses.
    pub fn refusal(&self, require_aof: bool) -> Option<String> {
        let major: u32 = self.version.split('.').next().and_then(|v| v.parse().ok()).unwrap_or(0);
        if major < 7 {
            return Some(format!("Redis {} is too old: qfrefund needs Redis 7.0 or later", self.version));
        }
        if self.maxmemory_policy != "noeviction" {
            return Some(format!(
                "Redis maxmemory-policy is {}: Redis may evict refund records under memory pressure. Set maxmemory-policy noeviction",
                self.maxmemory_policy
            ));
        }
        if require_aof && !self.aof_enabled {
            return Some(
                "Redis has no append-only file (appendonly no): a Redis restart would forget which refunds were sent. \
                 Set appendonly yes (appendfsync everysec or always), or QFREFUND_REQUIRE_AOF=off for a throwaway setup"
                    .into(),
            );
        }
        None
    }
}

/// Why an operator action was not carried out (it was audited all the same, when the refund exists).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("no refund with out_trade_no {0:?}")]
    NoSuchRefund(String),
    /// The refund is not in a state that allows the action; says which and why.
    #[error("{0}")]
    Refused(String),
}

/// What an operator does to a refund (see `lua/operate.lua`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// needs_review → pending (enquire first) or queued (never sent).
    Retry,
    /// needs_review → the final state the operator established with QFPay. A success is refused
    /// for a refund never sent, and for one that would take its payment past what was paid.
    Resolve(State),
    /// A resolve to success past what the payment's records allow, by a person holding QFPay's
    /// proof that the refund succeeded; audited as forced. A refund never sent is still refused.
    ForceResolve(State),
    /// queued → cancelled.
    Cancel,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger").field("prefix", &self.keys.prefix()).finish_non_exhaustive()
    }
}

impl Ledger {
    /// Connects (and keeps reconnecting, with backoff, whenever Redis goes away; with a
    /// `redis+sentinel://` URL it follows the primary through failovers, see [`crate::conn`]).
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

    /// Reads the server's version, persistence settings and replicas (from INFO, which managed
    /// Redis allows where CONFIG is disabled; `appendfsync` from CONFIG where allowed).
    pub async fn server_info(&self) -> Result<ServerInfo, LedgerError> {
        let info: String = redis::cmd("INFO")
            .arg("server")
            .arg("persistence")
            .arg("memory")
            .arg("replication")
            .query_async(&mut self.con.clone())
            .await?;
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(':')))
                .unwrap_or("")
                .trim()
                .to_owned()
        };
        let version = field("redis_version");
        let parts: Vec<u32> = version.split('.').map(|p| p.parse().unwrap_or(0)).collect();
        let at_least = |maj: u32, min: u32| {
            (parts.first().copied().unwrap_or(0), parts.get(1).copied().unwrap_or(0)) >= (maj, min)
        };
        Ok(ServerInfo {
            waitaof: at_least(7, 2),
            aof_enabled: field("aof_enabled") == "1",
            maxmemory_policy: field("maxmemory_policy"),
            connected_replicas: field("connected_slaves").parse().unwrap_or(0),
            appendfsync: self.appendfsync().await,
            version,
        })
    }

    /// What a write must reach before it counts: the configured replicas, and the local AOF when
    /// `local_aof` (see [`crate::durable`]: the wait always shares the write's pipeline).
    pub fn durability(&self, local_aof: bool) -> Durability {
        Durability {
            local_aof,
            replicas: self.config.wait_replicas,
            timeout_ms: self.config.wait_timeout.as_millis() as u64,
        }
    }

    /// The key each durability wait writes first (see [`crate::durable`]): under the ledger's tag.
    fn probe_key(&self) -> String {
        format!("{}:durable-probe", self.keys.prefix())
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
    async fn recheck_fsync(&self) {
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

    /// A connection handle (cheap to clone) for callers that need plain commands.
    pub fn connection(&self) -> RedisConn {
        self.con.clone()
    }

    /// A second, independent connection to the same Redis (apalis gets its own).
    pub async fn connect_again(&self) -> Result<RedisConn, LedgerError> {
        Ok(RedisConn::connect(self.con.endpoint().clone(), Self::connection_config(&self.config)).await?)
    }

    fn connection_config(config: &LedgerConfig) -> ConnectionManagerConfig {
        ConnectionManagerConfig::new()
            .set_response_timeout(Some(config.response_timeout))
            .set_connection_timeout(Some(Duration::from_secs(3)))
            .set_number_of_retries(3)
            .set_max_delay(Duration::from_secs(2))
    }

    /// Enqueues one refund: created, or the existing record for the same request; a conflict for
    /// another request under the same `out_trade_no`.
    pub async fn enqueue(&self, refund: NewRefund) -> Result<Enqueued, LedgerError> {
        let refund = refund.normalised();
        refund.validate()?;
        let inv = self.enqueue_invocation(&refund, self.now_ms());
        let mut con = self.con.clone();
        let (reply, durable): (Vec<String>, bool) =
            durable::invoke(&mut con, &inv, &self.durability(self.fsyncs_on_demand()), &self.probe_key()).await?;
        if !durable {
            self.recheck_fsync().await;
            return Err(LedgerError::NotReplicated(self.config.wait_replicas));
        }
        let out = self.enqueue_outcome(&refund, &reply).await;
        self.wake().await;
        out
    }

    /// Enqueues many refunds in pipelined chunks (one round trip per chunk). One result per input,
    /// in order; an invalid line is reported without touching Redis.
    pub async fn enqueue_batch(&self, refunds: Vec<NewRefund>) -> Vec<Result<Accepted, LedgerError>> {
        let mut results: Vec<Option<Result<Accepted, LedgerError>>> = Vec::with_capacity(refunds.len());
        let mut valid: Vec<(usize, NewRefund)> = Vec::new();
        for (i, r) in refunds.into_iter().enumerate() {
            let r = r.normalised();
            match r.validate() {
                Ok(()) => {
                    results.push(None);
                    valid.push((i, r));
                }
                Err(e) => results.push(Some(Err(e.into()))),
            }
        }
        let mut con = self.con.clone();
        for chunk in valid.chunks(500) {
            match self.enqueue_chunk(&mut con, chunk).await {
                // Written but not durable in time: none of the chunk counts as accepted (importing
                // again is idempotent).
                Ok((_, false)) => {
                    for (i, _) in chunk {
                        results[*i] = Some(Err(LedgerError::NotReplicated(self.config.wait_replicas)));
                    }
                }
                Ok((replies, true)) => {
                    for ((i, r), reply) in chunk.iter().zip(replies) {
                        results[*i] = Some(match reply.first().map(String::as_str) {
                            Some("created") => Ok(Accepted::Created),
                            Some("duplicate") => Ok(Accepted::Duplicate),
                            _ => self.enqueue_outcome(r, &reply).await.map(|_| Accepted::Created),
                        });
                    }
                }
                Err(e) => {
                    for (i, _) in chunk {
                        results[*i] = Some(Err(LedgerError::Redis(e.clone())));
                    }
                }
            }
        }
        self.wake().await;
        results.into_iter().map(|r| r.unwrap_or_else(|| Err(LedgerError::Script("no result".into())))).collect()
    }

    async fn enqueue_chunk(
        &self,
        con: &mut RedisConn,
        chunk: &[(usize, NewRefund)],
    ) -> Result<(Vec<Vec<String>>, bool), redis::RedisError> {
        let now = self.now_ms();
        let wait = self.durability(self.fsyncs_on_demand());
        // Pipelines do not load scripts by themselves: load once, retry once after a NOSCRIPT
        // (a Redis restarted between the two).
        for attempt in 0..2 {
            if attempt == 1 || !self.script_loaded(con).await {
                ENQUEUE_MANY.prepare_invoke().load_async(con).await?;
            }
            let mut pipe = redis::pipe();
            for part in chunk.chunks(ENQUEUE_PER_CALL) {
                pipe.invoke_script(&self.enqueue_many_invocation(part, now));
            }
            // The wait shares the pipeline, so it counts from these writes (see `durable`).
            match durable::query_pipeline(con, pipe, &wait, &self.probe_key()).await {
                Err(e) if attempt == 0 && e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {}
                Err(e) => return Err(e),
                // One answer per refund, `paid_mismatch:<paid>` split as enqueue answers it.
                Ok((parts, durable)) => {
                    let parts =
                        parts.into_iter().map(redis::from_redis_value::<Vec<String>>).collect::<Result<Vec<_>, _>>()?;
                    let answers =
                        parts.into_iter().flatten().map(|a| a.split(':').map(str::to_owned).collect()).collect();
                    return Ok((answers, durable));
                }
            }
        }
        Err(redis::RedisError::from((redis::ErrorKind::Io, "enqueue script could not be loaded")))
    }

    fn enqueue_many_invocation<'a>(&self, part: &[(usize, NewRefund)], now: i64) -> redis::ScriptInvocation<'a> {
        let mut inv = ENQUEUE_MANY.prepare_invoke();
        for (i, (_, r)) in part.iter().enumerate() {
            if i == 0 {
                for k in self.keys.script_keys(&r.out_trade_no, &r.syssn) {
                    inv.key(k);
                }
            } else {
                inv.key(self.keys.record(&r.out_trade_no)).key(self.keys.payment(&r.syssn));
            }
        }
        inv.arg(now).arg(self.config.events_maxlen).arg(part.len());
        for (_, r) in part {
            let fields = r.fields();
            inv.arg(&r.out_trade_no)
                .arg(r.payload_hash())
                .arg(r.orig_txamt.map(|v| v.to_string()).unwrap_or_default())
                .arg(fields.len());
            for (k, v) in fields {
                inv.arg(k).arg(v);
            }
        }
        inv
    }

    async fn script_loaded(&self, con: &mut RedisConn) -> bool {
        redis::cmd("SCRIPT")
            .arg("EXISTS")
            .arg(ENQUEUE_MANY.get_hash())
            .query_async::<Vec<bool>>(con)
            .await
            .is_ok_and(|v| v.first().copied().unwrap_or(false))
    }

    fn enqueue_invocation<'a>(&self, r: &NewRefund, now: i64) -> redis::ScriptInvocation<'a> {
        let mut inv = self.on_record(&ENQUEUE, &r.out_trade_no, &r.syssn);
        inv.arg(&r.out_trade_no)
            .arg(r.payload_hash())
            .arg(now)
            .arg(self.config.events_maxlen)
            .arg(r.orig_txamt.map(|v| v.to_string()).unwrap_or_default());
        for (k, v) in r.fields() {
            inv.arg(k).arg(v);
        }
        inv
    }

    async fn enqueue_outcome(&self, r: &NewRefund, reply: &[String]) -> Result<Enqueued, LedgerError> {
        // The script has run: whatever fails now, the caller must not read it as "not written".
        let load = || async {
            match self.get(&r.out_trade_no).await {
                Ok(Some(rec)) => Ok(rec),
                Ok(None) => Err(LedgerError::Script("record vanished".into())),
                Err(e) => Err(LedgerError::Unread(e.to_string())),
            }
        };
        match reply.first().map(String::as_str) {
            Some("created") => Ok(Enqueued::Created(load().await?)),
            Some("duplicate") => Ok(Enqueued::Duplicate(load().await?)),
            Some("conflict") => {
                let existing = load().await?;
                Err(LedgerError::Conflict {
                    out_trade_no: r.out_trade_no.clone(),
                    differences: r.differences(&existing),
                    existing: Box::new(existing),
                })
            }
            Some("paid_mismatch") => Err(LedgerError::PaidMismatch {
                syssn: r.syssn.clone(),
                recorded: reply.get(1).cloned().unwrap_or_default(),
                given: r.orig_txamt.unwrap_or(0),
            }),
            _ => Err(LedgerError::Script(format!("enqueue answered {reply:?}"))),
        }
    }

    /// An invocation of a record script with its KEYS (see `lua/common.lua`) already set.
    fn on_record<'a>(&self, script: &'a Script, out_trade_no: &str, syssn: &str) -> redis::ScriptInvocation<'a> {
        let mut inv = script.prepare_invoke();
        for k in self.keys.script_keys(out_trade_no, syssn) {
            inv.key(k);
        }
        inv
    }

    /// Tells idle workers there is work (they block on this list instead of polling).
    async fn wake(&self) {
        let mut con = self.con.clone();
        let key = self.keys.wake();
        let _: Result<(), _> = redis::pipe().lpush(&key, 1).ltrim(&key, 0, 15).query_async(&mut con).await;
    }

    /// The record of `out_trade_no`, if there is one.
    pub async fn get(&self, out_trade_no: &str) -> Result<Option<Record>, LedgerError> {
        let key = self.keys.record(out_trade_no);
        let h: HashMap<String, String> = self.con.clone().hgetall(&key).await?;
        if h.is_empty() {
            return Ok(None);
        }
        Ok(Some(Record::from_hash(&key, &h)?))
    }

    /// Up to `limit` out_trade_nos in `state`, oldest first, starting at `offset`.
    pub async fn list(&self, state: State, offset: isize, limit: isize) -> Result<Vec<String>, LedgerError> {
        let ids: Vec<String> =
            self.con.clone().zrange(self.keys.state(state), offset, offset + limit.max(1) - 1).await?;
        Ok(ids)
    }

    /// How many refunds are in each state.
    pub async fn counts(&self) -> Result<Vec<(State, u64)>, LedgerError> {
        let mut pipe = redis::pipe();
        for s in State::ALL {
            pipe.zcard(self.keys.state(s));
        }
        let counts: Vec<u64> = pipe.query_async(&mut self.con.clone()).await?;
        Ok(State::ALL.into_iter().zip(counts).collect())
    }

    /// Claims a due refund for this worker (see `lua/claim.lua`): one round trip that reads the
    /// record, checks it is due, takes a rate-limit token when a request will be sent, and takes
    /// the lease.
    pub async fn claim(&self, target: &RefundRef, o: &ClaimOptions<'_>) -> Result<Claim, LedgerError> {
        let mut inv = self.on_record(&CLAIM, &target.out_trade_no, &target.syssn);
        let (rate, burst) = o.rate.map_or((String::new(), 0), |(r, b)| (r.to_string(), b));
        inv.key(self.keys.rate(&target.merchant))
            .arg(&target.out_trade_no)
            .arg(self.now_ms())
            .arg(o.worker)
            .arg(o.policy.lease.as_millis() as u64)
            .arg(o.txdtm)
            .arg(o.policy.syssn_busy_wait.as_millis() as u64)
            .arg(o.policy.paused_wait.as_millis() as u64)
            .arg(self.config.events_maxlen)
            .arg(if o.want_paid { "1" } else { "0" })
            .arg(o.submit_not_before)
            .arg(o.policy.max_age.as_millis() as u64)
            .arg(&target.syssn)
            .arg(&target.merchant)
            .arg(rate)
            .arg(burst);
        let (reply, durable): (Vec<String>, bool) = durable::invoke(
            &mut self.con.clone(),
            &inv,
            &self.durability(o.durable_local && self.fsyncs_on_demand()),
            &self.probe_key(),
        )
        .await?;
        let at = |i: usize| reply.get(i).cloned().unwrap_or_default();
        let bad = || LedgerError::Script(format!("claim answered {:?}", reply.first()));
        let claimed = || -> Result<(u64, Box<Record>), LedgerError> {
            let fence = at(1).parse::<u64>().map_err(|_| bad())?;
            let fields: HashMap<String, String> =
                reply[2..].chunks_exact(2).map(|kv| (kv[0].clone(), kv[1].clone())).collect();
            Ok((fence, Box::new(Record::from_hash(&self.keys.record(&target.out_trade_no), &fields)?)))
        };
        Ok(match at(0).as_str() {
            "submit" => claimed().map(|(fence, record)| Claim::Submit { fence, record, durable })?,
            "enquire" => claimed().map(|(fence, record)| Claim::Enquire { fence, record, durable })?,
            "need_paid" => Claim::NeedPaid,
            "failed" => Claim::Failed(at(1)),
            "blocked" => Claim::Blocked(at(1)),
            "deferred" => Claim::Deferred { why: at(1), next_at: at(2).parse().map_err(|_| bad())? },
            "mismatch" => Claim::Mismatch,
            "missing" | "final" | "review" | "leased" | "early" => Claim::Skip(reply.join(" ")),
            _ => return Err(bad()),
        })
    }

    /// Applies `decision` if this worker still holds the refund under `fence` in `expected` state.
    /// `Ok(false)`: the fence moved on — another worker took over, and nothing was written.
    /// `op` identifies this decision: applying the same `op` again (after a lost reply) is a no-op.
    pub async fn transition(
        &self,
        rec: &Record,
        expected: State,
        fence: u64,
        d: &Decision,
        op: &str,
    ) -> Result<bool, LedgerError> {
        let mut inv = self.on_record(&TRANSITION, &rec.out_trade_no, &rec.syssn);
        inv.key(self.keys.audit())
            .arg(&rec.out_trade_no)
            .arg(expected.as_str())
            .arg(fence)
            .arg(d.state.as_str())
            .arg(d.next_at.unwrap_or(-1))
            .arg(self.now_ms())
            .arg(&d.reason)
            .arg(if d.pause_merchant { rec.merchant.as_str() } else { "" })
            .arg(self.config.events_maxlen)
            .arg(op)
            .arg(rec.lease_owner.as_deref().unwrap_or(""));
        for (k, v) in &d.set {
            inv.arg(*k).arg(v);
        }
        let reply: Vec<String> = inv.invoke_async(&mut self.con.clone()).await?;
        match reply.first().map(String::as_str) {
            Some("ok") => Ok(true),
            Some("stale") => Ok(false),
            _ => Err(LedgerError::Script(format!("transition answered {reply:?}"))),
        }
    }

    /// Moves the next step of an unheld refund to `next_at` (no state change, no event); past
    /// `max_age` the refund goes to `needs_review` instead. `Ok(false)`: it was not deferred.
    pub async fn defer(
        &self,
        rec: &Record,
        next_at: i64,
        reason: &str,
        max_age: Duration,
    ) -> Result<bool, LedgerError> {
        let mut inv = self.on_record(&DEFER, &rec.out_trade_no, &rec.syssn);
        inv.arg(&rec.out_trade_no)
            .arg(rec.state.as_str())
            .arg(next_at)
            .arg(self.now_ms())
            .arg(reason)
            .arg(max_age.as_millis() as u64)
            .arg(self.config.events_maxlen);
        let reply: Vec<String> = inv.invoke_async(&mut self.con.clone()).await?;
        Ok(reply.first().is_some_and(|r| r == "ok"))
    }

    /// An operator's action on a refund, recorded with `who` and `why`. `Ok(Err(why))`: refused.
    pub async fn operate(
        &self,
        out_trade_no: &str,
        op: Operation,
        who: &str,
        why: &str,
    ) -> Result<Result<State, Refusal>, LedgerError> {
        let Some(rec) = self.get(out_trade_no).await? else {
            return Ok(Err(Refusal::NoSuchRefund(out_trade_no.to_owned())));
        };
        let (action, target) = match op {
            Operation::Retry => ("retry", ""),
            Operation::Resolve(s) | Operation::ForceResolve(s) => ("resolve", s.as_str()),
            Operation::Cancel => ("cancel", ""),
        };
        let force = if matches!(op, Operation::ForceResolve(_)) { "1" } else { "" };
        let mut inv = self.on_record(&OPERATE, &rec.out_trade_no, &rec.syssn);
        inv.key(self.keys.audit())
            .arg(out_trade_no)
            .arg(action)
            .arg(target)
            .arg(who)
            .arg(why)
            .arg(self.now_ms())
            .arg(self.config.events_maxlen)
            .arg(force);
        let reply: Vec<String> = inv.invoke_async(&mut self.con.clone()).await?;
        let at = |i: usize| reply.get(i).cloned().unwrap_or_default();
        match at(0).as_str() {
            "ok" => at(1).parse::<State>().map(Ok).map_err(|e| LedgerError::Script(e.to_string())),
            "refused" if at(1) == "no such refund" => Ok(Err(Refusal::NoSuchRefund(out_trade_no.to_owned()))),
            "refused" => Ok(Err(Refusal::Refused(at(1)))),
            _ => Err(LedgerError::Script(format!("operate answered {reply:?}"))),
        }
    }

    /// Records a payment's amount learned by enquiry (first writer wins); returns the recorded one.
    pub async fn set_paid(&self, target: &RefundRef, paid: u64) -> Result<u64, LedgerError> {
        let mut inv = self.on_record(&SET_PAID, &target.out_trade_no, &target.syssn);
        inv.arg(paid);
        let v: String = inv.invoke_async(&mut self.con.clone()).await?;
        v.parse().map_err(|_| LedgerError::Script(format!("set_paid answered {v:?}")))
    }

    /// Takes up to `limit` due refunds for delivery, holding each for `hold`, and names each one's
    /// payment and merchant (one pipelined read for the whole batch) so that its claim needs no
    /// read of its own. A refund whose record is gone is left out.
    pub async fn feed(&self, limit: usize, hold: Duration) -> Result<Vec<RefundRef>, LedgerError> {
        let mut inv = FEED.prepare_invoke();
        inv.key(self.keys.due()).arg(self.now_ms()).arg(limit).arg(hold.as_millis() as u64);
        let ids: Vec<String> = inv.invoke_async(&mut self.con.clone()).await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.cmd("HMGET").arg(self.keys.record(id)).arg("syssn").arg("merchant");
        }
        let named: Vec<(Option<String>, Option<String>)> = pipe.query_async(&mut self.con.clone()).await?;
        Ok(ids
            .into_iter()
            .zip(named)
            .filter_map(|(out_trade_no, pair)| match pair {
                (Some(syssn), Some(merchant)) => Some(RefundRef { out_trade_no, syssn, merchant }),
                _ => None,
            })
            .collect())
    }

    /// Takes a token from `merchant`'s bucket: `Ok(0)` if taken, else the ms to wait for one.
    pub async fn take_token(&self, merchant: &str, per_sec: f64, burst: u32) -> Result<u64, LedgerError> {
        let mut inv = RATE_LIMIT.prepare_invoke();
        inv.key(self.keys.rate(merchant)).arg(per_sec).arg(burst).arg(self.now_ms());
        Ok(inv.invoke_async(&mut self.con.clone()).await?)
    }

    // Ledger::pause and Ledger::resume: see crate::pause (audited).

    /// Paused merchants and why.
    pub async fn paused(&self) -> Result<HashMap<String, String>, LedgerError> {
        Ok(self.con.clone().hgetall(self.keys.paused()).await?)
    }

    /// Outcome-stream entries after the id `after` (`"0"`: from the beginning), at most `count`.
    pub async fn events(&self, after: &str, count: usize) -> Result<Vec<Event>, LedgerError> {
        let entries = self.stream_after(&self.keys.events(), after, count).await?;
        Ok(entries.into_iter().map(|(id, f)| Event::from_fields(id, f)).collect())
    }

    /// Entries of stream `key` after the id `after` (`"0"` or empty: from the beginning).
    async fn stream_after(
        &self,
        key: &str,
        after: &str,
        count: usize,
    ) -> Result<Vec<(String, HashMap<String, String>)>, LedgerError> {
        let start = if after == "0" || after.is_empty() { "-".to_owned() } else { format!("({after}") };
        Ok(redis::cmd("XRANGE")
            .arg(key)
            .arg(start)
            .arg("+")
            .arg("COUNT")
            .arg(count)
            .query_async(&mut self.con.clone())
            .await?)
    }

    /// When the earliest refund in the due-index is due (ms), if any.
    pub async fn next_due(&self) -> Result<Option<i64>, LedgerError> {
        let first: Vec<(String, f64)> = self.con.clone().zrange_withscores(self.keys.due(), 0, 0).await?;
        Ok(first.first().map(|(_, score)| *score as i64))
    }

    /// Number of refunds waiting in the due-index (due now or later).
    pub async fn due_len(&self) -> Result<u64, LedgerError> {
        Ok(self.con.clone().zcard(self.keys.due()).await?)
    }

    /// Records of `ids`, in order, in one pipelined round trip; ids without a record are left out.
    pub async fn get_many(&self, ids: &[String]) -> Result<Vec<Record>, LedgerError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.hgetall(self.keys.record(id));
        }
        let hashes: Vec<HashMap<String, String>> = pipe.query_async(&mut self.con.clone()).await?;
        let mut out = Vec::with_capacity(ids.len());
        for (id, h) in ids.iter().zip(hashes) {
            if !h.is_empty() {
                out.push(Record::from_hash(&self.keys.record(id), &h)?);
            }
        }
        Ok(out)
    }

    /// One page of the refunds in `state`, oldest first (by when they entered it), after `cursor`
    /// (from the previous page; `None` for the first). The returned cursor is `None` on the last
    /// page. Refunds moving between states while a client pages may be missed or seen twice in
    /// another state's pages, never twice in one state's.
    pub async fn page(
        &self,
        state: State,
        cursor: Option<&PageCursor>,
        limit: usize,
    ) -> Result<(Vec<Record>, Option<PageCursor>), LedgerError> {
        let limit = limit.clamp(1, 1_000);
        let mut inv = PAGE.prepare_invoke();
        inv.key(self.keys.state(state));
        match cursor {
            Some(c) => inv.arg(c.score).arg(&c.member),
            None => inv.arg("").arg(""),
        };
        inv.arg(limit);
        let flat: Vec<String> = inv.invoke_async(&mut self.con.clone()).await?;
        let pairs: Vec<(String, i64)> =
            flat.chunks_exact(2).map(|p| (p[0].clone(), p[1].parse::<f64>().unwrap_or(0.0) as i64)).collect();
        let next = if pairs.len() == limit {
            pairs.last().map(|(m, s)| PageCursor { score: *s, member: m.clone() })
        } else {
            None
        };
        let ids: Vec<String> = pairs.into_iter().map(|(m, _)| m).collect();
        Ok((self.get_many(&ids).await?, next))
    }

    /// The out_trade_nos of refunds created in `[from, to]` (ms), oldest first, at most `limit`
    /// after skipping `offset`.
    pub async fn created_between(
        &self,
        from: i64,
        to: i64,
        offset: isize,
        limit: isize,
    ) -> Result<Vec<String>, LedgerError> {
        Ok(self.con.clone().zrangebyscore_limit(self.keys.created(), from, to, offset, limit).await?)
    }

    /// Every refund of payment `syssn`, oldest first.
    pub async fn by_payment(&self, syssn: &str) -> Result<Vec<Record>, LedgerError> {
        let h: HashMap<String, String> = self.con.clone().hgetall(self.keys.payment(syssn)).await?;
        let mut ids: Vec<(i64, String)> = h
            .into_iter()
            .filter_map(|(k, v)| k.strip_prefix("r:").map(|otn| (v.parse().unwrap_or(0), otn.to_owned())))
            .collect();
        ids.sort();
        let ids: Vec<String> = ids.into_iter().map(|(_, otn)| otn).collect();
        self.get_many(&ids).await
    }

    /// Makes a `pending` refund's enquiry due now (QFPay notified an outcome). `Ok(false)`: there
    /// was nothing to bring forward (unknown, not pending, held, or already due).
    pub async fn expedite(&self, out_trade_no: &str) -> Result<bool, LedgerError> {
        let Some(rec) = self.get(out_trade_no).await? else { return Ok(false) };
        let mut inv = self.on_record(&EXPEDITE, &rec.out_trade_no, &rec.syssn);
        inv.arg(out_trade_no).arg(self.now_ms());
        let reply: Vec<String> = inv.invoke_async(&mut self.con.clone()).await?;
        let done = reply.first().is_some_and(|r| r == "ok");
        if done {
            self.wake().await;
        }
        Ok(done)
    }

    /// Audit-trail entries (operator actions, refused ones included) after the id `after`
    /// (`"0"`: from the beginning), at most `count`.
    pub async fn audit(&self, after: &str, count: usize) -> Result<Vec<AuditEntry>, LedgerError> {
        let entries = self.stream_after(&self.keys.audit(), after, count).await?;
        Ok(entries.into_iter().map(|(id, f)| AuditEntry::from_fields(id, f)).collect())
    }

    /// The newest outcome-stream id, if there is any entry.
    pub async fn last_event_id(&self) -> Result<Option<String>, LedgerError> {
        let last: Vec<(String, HashMap<String, String>)> = redis::cmd("XREVRANGE")
            .arg(self.keys.events())
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut self.con.clone())
            .await?;
        Ok(last.into_iter().next().map(|(id, _)| id))
    }

    /// Jobs waiting in apalis' ready list (fed, not yet fetched by a worker).
    pub async fn apalis_depth(&self) -> Result<u64, LedgerError> {
        let key = format!("{}:active", self.keys.apalis_queue());
        Ok(self.con.clone().llen(key).await?)
    }

    /// Whether Redis answers.
    pub async fn ping(&self) -> Result<(), LedgerError> {
        let _: String = redis::cmd("PING").query_async(&mut self.con.clone()).await?;
        Ok(())
    }

    /// What an operator (or a metrics scrape) wants to know at a glance.
    pub async fn stats(&self) -> Result<Stats, LedgerError> {
        let now = self.now_ms();
        let mut pipe = redis::pipe();
        for s in State::ALL {
            pipe.zcard(self.keys.state(s));
        }
        for s in State::ALL.into_iter().filter(|s| !s.is_final()) {
            pipe.cmd("ZRANGE").arg(self.keys.state(s)).arg(0).arg(0).arg("WITHSCORES");
        }
        pipe.zcard(self.keys.due()).zcount(self.keys.due(), "-inf", now).hgetall(self.keys.paused());
        pipe.zcard(self.keys.webhook_failed()).zcard(self.keys.webhook_retry());
        let mut values: Vec<redis::Value> = pipe.query_async(&mut self.con.clone()).await?;
        let bad = |what: &str| LedgerError::Script(format!("stats: unexpected reply for {what}"));
        let mut take = || if values.is_empty() { None } else { Some(values.remove(0)) };
        let mut by_state = Vec::new();
        for s in State::ALL {
            let n: u64 = redis::from_redis_value(take().ok_or_else(|| bad("counts"))?).map_err(|_| bad("counts"))?;
            by_state.push((s, n));
        }
        let mut oldest_open_at: Option<i64> = None;
        for _ in State::ALL.into_iter().filter(|s| !s.is_final()) {
            let first: Vec<(String, f64)> =
                redis::from_redis_value(take().ok_or_else(|| bad("oldest"))?).map_err(|_| bad("oldest"))?;
            if let Some((_, at)) = first.first() {
                let at = *at as i64;
                oldest_open_at = Some(oldest_open_at.map_or(at, |o| o.min(at)));
            }
        }
        let due_total: u64 = redis::from_redis_value(take().ok_or_else(|| bad("due"))?).map_err(|_| bad("due"))?;
        let due_now: u64 = redis::from_redis_value(take().ok_or_else(|| bad("due"))?).map_err(|_| bad("due"))?;
        let paused: HashMap<String, String> =
            redis::from_redis_value(take().ok_or_else(|| bad("paused"))?).map_err(|_| bad("paused"))?;
        let webhooks_failed: u64 =
            redis::from_redis_value(take().ok_or_else(|| bad("webhooks"))?).map_err(|_| bad("webhooks"))?;
        let webhooks_retrying: u64 =
            redis::from_redis_value(take().ok_or_else(|| bad("webhooks"))?).map_err(|_| bad("webhooks"))?;
        Ok(Stats {
            by_state,
            oldest_open_age_ms: oldest_open_at.map(|at| (now - at).max(0)),
            due_total,
            due_now,
            paused,
            webhooks_failed,
            webhooks_retrying,
        })
    }
}
