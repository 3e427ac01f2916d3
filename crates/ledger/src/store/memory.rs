//! Redis memory as qfrefund sees it: each primary's `used_memory` against its `maxmemory`, and
//! what that comes to per refund held. Workers require `maxmemory-policy noeviction`, so a full
//! Redis refuses every write — refunds stop — long before anything is lost: the point is to see
//! it coming (a WARN above [`WARN_AT`] of `maxmemory`, gauges on `/metrics`, `qfrefund stats`).

use serde::Serialize;

use crate::error::LedgerError;
use crate::store::Ledger;

/// The share of `maxmemory` above which workers and the API WARN.
pub const WARN_AT: f64 = 0.8;

/// One primary's memory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PrimaryMemory {
    /// `host:port`.
    pub primary: String,
    pub used_memory: u64,
    /// 0: no limit set (Redis grows until the machine runs out).
    pub maxmemory: u64,
}

/// Memory of every primary, and the refunds held.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemoryReport {
    pub primaries: Vec<PrimaryMemory>,
    /// Refund records in Redis (every state; archived refunds are not among them).
    pub refunds: u64,
    /// Tombstones of archived refunds and payments.
    pub tombstones: u64,
    /// `used_memory` (every primary) per refund record held; `None` with no refund.
    pub bytes_per_refund: Option<f64>,
}

impl MemoryReport {
    /// One line per primary above [`WARN_AT`] of its `maxmemory`.
    pub fn warnings(&self) -> Vec<String> {
        self.primaries
            .iter()
            .filter(|p| p.maxmemory > 0 && p.used_memory as f64 > WARN_AT * p.maxmemory as f64)
            .map(|p| {
                format!(
                    "Redis {} uses {} of its maxmemory {} ({:.0}%): when it is full every write is refused and refunds \
                     stop; archive sooner (retention), add memory or shards",
                    p.primary,
                    p.used_memory,
                    p.maxmemory,
                    100.0 * p.used_memory as f64 / p.maxmemory as f64
                )
            })
            .collect()
    }
}

impl Ledger {
    /// Memory of every primary, refunds and tombstones held.
    pub async fn memory(&self) -> Result<MemoryReport, LedgerError> {
        let primaries = self
            .server_infos()
            .await?
            .into_iter()
            .map(|(primary, i)| PrimaryMemory { primary, used_memory: i.used_memory, maxmemory: i.maxmemory })
            .collect::<Vec<_>>();
        let refunds: u64 = self.counts().await?.iter().map(|(_, n)| n).sum();
        let mut tombstones = 0;
        for shard in 0..self.shard_count() {
            tombstones += self.tombstone_count(shard).await?;
        }
        let used: u64 = primaries.iter().map(|p| p.used_memory).sum();
        let bytes_per_refund = (refunds > 0).then(|| used as f64 / refunds as f64);
        Ok(MemoryReport { primaries, refunds, tombstones, bytes_per_refund })
    }

    /// WARNs (once per call, per primary) when a primary is above [`WARN_AT`] of its
    /// `maxmemory`; for a process's periodic check.
    pub async fn warn_on_memory(&self) {
        match self.memory().await {
            Ok(m) => {
                for w in m.warnings() {
                    tracing::warn!("{w}");
                }
            }
            Err(e) => tracing::debug!(error = %e, "reading Redis memory failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_primary_above_four_fifths_of_its_maxmemory_is_warned_about() {
        let p = |used, max| PrimaryMemory { primary: "h:1".into(), used_memory: used, maxmemory: max };
        let r = |ps| MemoryReport { primaries: ps, refunds: 0, tombstones: 0, bytes_per_refund: None };
        assert!(r(vec![p(79, 100), p(10, 0)]).warnings().is_empty());
        let w = r(vec![p(81, 100)]).warnings();
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("81%") && w[0].contains("h:1"), "{}", w[0]);
    }
}
