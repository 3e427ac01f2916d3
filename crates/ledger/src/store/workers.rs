//! The live workers: each registers itself every heartbeat (name, host, version, concurrency,
//! refunds in flight, the merchants and shards it serves) under the ledger's own tag, for the
//! operators' view (`qfrefund workers`, `GET /v1/workers`, `qfrefund_workers`). A worker that
//! stops heartbeating drops out of the view after its TTL; its entry is removed an hour later
//! (or at once when it stops cleanly).

use std::collections::HashMap;
use std::time::Duration;

use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

use crate::error::LedgerError;
use crate::store::Ledger;
use crate::store::keys::Keys;

/// How long after its last heartbeat a silent worker's entry is removed.
const FORGET_AFTER_MS: i64 = 3_600_000;

/// One worker, as it last registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkerInfo {
    /// Unique per process (`qfrefund-<pid>-<random>`).
    pub name: String,
    pub host: String,
    /// The qfrefund version it runs.
    pub version: String,
    /// Refunds it works on at once, at most.
    pub concurrency: usize,
    /// Refunds it works on now.
    pub in_flight: usize,
    /// The merchants it holds credentials for.
    pub merchants: Vec<String>,
    /// The shards it fetches from (every shard when it was not told otherwise).
    pub shards: Vec<usize>,
    /// When it started and when it last registered (ms since the epoch).
    pub started_at: i64,
    pub heartbeat_at: i64,
    /// Until when this registration holds without another heartbeat (ms).
    pub until: i64,
}

impl Ledger {
    fn workers_key(&self) -> String {
        Keys::new(&self.config.namespace, &self.config.tag).workers()
    }

    /// Registers (or renews) `info` for `ttl` from now; sets its `heartbeat_at` and `until`.
    pub async fn register_worker(&self, info: &WorkerInfo, ttl: Duration) -> Result<(), LedgerError> {
        let now = self.now_ms();
        let info = WorkerInfo { heartbeat_at: now, until: now + ttl.as_millis() as i64, ..info.clone() };
        let json = serde_json::to_string(&info).map_err(|e| LedgerError::Script(e.to_string()))?;
        let _: () = self.con.clone().hset(self.workers_key(), &info.name, json).await?;
        Ok(())
    }

    /// Removes `name`'s registration (a worker stopping cleanly).
    pub async fn unregister_worker(&self, name: &str) -> Result<(), LedgerError> {
        let _: () = self.con.clone().hdel(self.workers_key(), name).await?;
        Ok(())
    }

    /// The workers whose registration holds now, by name; entries silent for over an hour (or
    /// that do not read) are removed on the way.
    pub async fn live_workers(&self) -> Result<Vec<WorkerInfo>, LedgerError> {
        let now = self.now_ms();
        let all: HashMap<String, String> = self.con.clone().hgetall(self.workers_key()).await?;
        let (mut live, mut stale) = (Vec::new(), Vec::new());
        for (name, raw) in all {
            match serde_json::from_str::<WorkerInfo>(&raw) {
                Ok(w) if w.until > now => live.push(w),
                Ok(w) if w.until + FORGET_AFTER_MS > now => {}
                _ => stale.push(name),
            }
        }
        if !stale.is_empty() {
            let _: () = self.con.clone().hdel(self.workers_key(), stale).await?;
        }
        live.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(live)
    }
}
