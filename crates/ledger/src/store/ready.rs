//! Whether this ledger can take a refund *now*, and whether its Redis may hold refunds at all —
//! asked by producers (CLI, API, library) as much as by workers.
//!
//! `PING` answers while Redis refuses every write (`OOM` at `maxmemory` with `noeviction`, a
//! read-only replica after a failover, `MISCONF` after a failed save): readiness probes that only
//! ping send producers to a Redis that turns every refund away. [`Ledger::writable`] writes a tiny
//! key instead, which Redis refuses exactly when it would refuse an enqueue's script.
//!
//! [`Ledger::check_server`] is what every entry point (worker, `serve`, the CLI producers, the
//! library's [`Ledger::connect_producer`]) runs at start-up: it refuses a set-up that would lose
//! refunds or could never make a write durable, and warns about one whose durability is weaker
//! than docs/guarantees.md promises.

use crate::store::conn::Endpoint;
use crate::store::{Ledger, LedgerError};
use crate::{LedgerConfig, ServerInfo};

/// How long the probe key lives (ms): it never accumulates.
const PROBE_TTL_MS: u64 = 60_000;

/// Why a producer must not use this Redis.
#[derive(Debug, thiserror::Error)]
pub enum NotUsable {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The Redis set-up would lose refunds (see [`ServerInfo::refusal`]).
    #[error("{0}")]
    Refused(String),
}

impl ServerInfo {
    /// Refuses `wait_replicas` above the replicas connected now: every enqueue would answer "not
    /// replicated" and no claim would ever be sent — a stall, not safety.
    pub fn replica_shortfall(&self, wait_replicas: usize) -> Option<String> {
        (wait_replicas > self.connected_replicas).then(|| {
            format!(
                "QFREFUND_REDIS_WAIT_REPLICAS is {wait_replicas} but the Redis primary has {} connected replica(s): \
                 no write could ever be confirmed. Lower it to at most {} (0 for a Redis without replicas)",
                self.connected_replicas, self.connected_replicas
            )
        })
    }

    /// What weakens a promise without making the set-up unusable, one sentence each.
    pub fn warnings(&self, sentinel: bool, wait_replicas: usize) -> Vec<String> {
        let mut out = Vec::new();
        if sentinel && wait_replicas == 0 {
            out.push(
                "Redis Sentinel with QFREFUND_REDIS_WAIT_REPLICAS=0: replication is asynchronous, so a failover can \
                 lose acknowledged enqueues and claims (a claim lost after its refund was sent is sent again). \
                 Set it to 1 with two replicas"
                    .to_owned(),
            );
        }
        if self.aof_enabled && !self.waitaof && self.appendfsync.as_deref() != Some("always") {
            let fsync = self.appendfsync.as_deref().unwrap_or("unknown (CONFIG refused)");
            out.push(format!(
                "Redis {} has no WAITAOF (needs 7.2) and appendfsync is {fsync}: a Redis crash can lose up to a \
                 second of acknowledged enqueues and claims. appendfsync always is required for the durability \
                 promise of enqueues and claims (or Redis 7.2 or later)",
                self.version
            ));
        }
        out
    }
}

impl Ledger {
    /// A write to a tiny key of every shard: `Ok` when Redis takes writes now (with Cluster:
    /// every primary holding a shard).
    pub async fn writable(&self) -> Result<(), LedgerError> {
        for shard in 0..self.shard_count() {
            redis::cmd("SET")
                .arg(self.probe_key(shard))
                .arg(self.now_ms())
                .arg("PX")
                .arg(PROBE_TTL_MS)
                .query_async::<()>(&mut self.connection())
                .await?;
        }
        Ok(())
    }

    /// Refuses a Redis that would lose refunds, exactly as workers do ([`ServerInfo::refusal`]):
    /// an evicting `maxmemory-policy`, a Redis older than 7.0, when `require_aof` no AOF, and a
    /// `wait_replicas` above the replicas connected ([`ServerInfo::replica_shortfall`]). Logs a
    /// WARN for each of [`ServerInfo::warnings`].
    /// With Redis Cluster, every primary is checked and the first refusal names its node.
    pub async fn check_server(&self, require_aof: bool) -> Result<ServerInfo, NotUsable> {
        let all = self.server_infos().await?;
        let cluster = matches!(self.connection().endpoint(), Endpoint::Cluster(_));
        let wait_replicas = self.config().wait_replicas;
        for (node, info) in &all {
            if let Some(why) = info.refusal(require_aof).or_else(|| info.replica_shortfall(wait_replicas)) {
                return Err(NotUsable::Refused(if cluster { format!("cluster primary {node}: {why}") } else { why }));
            }
        }
        let sentinel = matches!(self.connection().endpoint(), Endpoint::Sentinel(_));
        let mut seen = std::collections::BTreeSet::new();
        for (_, info) in &all {
            for warning in info.warnings(sentinel, wait_replicas) {
                if seen.insert(warning.clone()) {
                    tracing::warn!("{warning}");
                }
            }
        }
        self.server_info().await.map_err(NotUsable::from)
    }

    /// Connects as a producer: the same connection as [`Ledger::connect`], refused when the Redis
    /// set-up would lose refunds (see [`Ledger::check_server`]).
    pub async fn connect_producer(url: &str, config: LedgerConfig, require_aof: bool) -> Result<Self, NotUsable> {
        let ledger = Ledger::connect(url, config).await?;
        ledger.check_server(require_aof).await?;
        Ok(ledger)
    }
}
