//! Whether this ledger can take a refund *now*, and whether its Redis may hold refunds at all —
//! asked by producers (CLI, API, library) as much as by workers.
//!
//! `PING` answers while Redis refuses every write (`OOM` at `maxmemory` with `noeviction`, a
//! read-only replica after a failover, `MISCONF` after a failed save): readiness probes that only
//! ping send producers to a Redis that turns every refund away. [`Ledger::writable`] writes a tiny
//! key instead, which Redis refuses exactly when it would refuse an enqueue's script.

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

impl Ledger {
    /// A write to a tiny key of this ledger: `Ok` when Redis takes writes now.
    pub async fn writable(&self) -> Result<(), LedgerError> {
        let key = format!("{}:ready-probe", self.keys().prefix());
        redis::cmd("SET")
            .arg(&key)
            .arg(self.now_ms())
            .arg("PX")
            .arg(PROBE_TTL_MS)
            .query_async::<()>(&mut self.connection())
            .await?;
        Ok(())
    }

    /// Refuses a Redis that would lose refunds, exactly as workers do ([`ServerInfo::refusal`]):
    /// an evicting `maxmemory-policy`, a Redis older than 7.0, and, when `require_aof`, no AOF.
    pub async fn check_server(&self, require_aof: bool) -> Result<ServerInfo, NotUsable> {
        let info = self.server_info().await?;
        match info.refusal(require_aof) {
            Some(why) => Err(NotUsable::Refused(why)),
            None => Ok(info),
        }
    }

    /// Connects as a producer: the same connection as [`Ledger::connect`], refused when the Redis
    /// set-up would lose refunds (see [`Ledger::check_server`]).
    pub async fn connect_producer(url: &str, config: LedgerConfig, require_aof: bool) -> Result<Self, NotUsable> {
        let ledger = Ledger::connect(url, config).await?;
        ledger.check_server(require_aof).await?;
        Ok(ledger)
    }
}
