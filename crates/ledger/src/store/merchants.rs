//! Which merchants can be refunded: those a configuration knows, and those live workers hold
//! credentials for.
//!
//! A refund for a merchant nobody can sign for waits, unseen, until `max_age` sends it to review
//! (48 h by default). Producers refuse it instead, and need no credentials to check: every worker
//! announces the merchants it serves in one hash (`<prefix>:served`, merchant → until, ms, Redis'
//! clock), renewed each heartbeat; an announcement not renewed within its ttl no longer counts.
//! Refunds already waiting for a merchant no live worker serves are counted by
//! [`Ledger::unserved_refunds`] (`stats`, `/metrics`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use crate::store::{Ledger, LedgerError};

/// A merchant neither the caller's configuration nor any live worker knows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown merchant {merchant:?}: no configuration or live worker knows it (known merchants: {})",
    if known.is_empty() { "none".to_owned() } else { known.join(", ") }
)]
pub struct UnknownMerchant {
    pub merchant: String,
    /// Every merchant that is known, sorted.
    pub known: Vec<String>,
}

/// How many refunds of the due-index (earliest due first) a `/metrics` scrape looks at for
/// [`Ledger::unserved_refunds`]: every scrape of every process pays for it, so it stays small;
/// `qfrefund stats` counts them all.
pub const METRICS_SCAN: usize = 5_000;

/// Refunds in the due-index whose merchant no live worker serves.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Unserved {
    /// Merchant → refunds waiting for it.
    pub refunds: BTreeMap<String, u64>,
    /// The due-index was longer than the scan's limit: the counts cover its first part only.
    pub truncated: bool,
}

impl Ledger {
    /// A worker's heartbeat: it serves `merchants` for the next `ttl` (each announced in its
    /// merchant's shard; one pipeline per shard).
    pub async fn announce_served(&self, merchants: &[String], ttl: Duration) -> Result<(), LedgerError> {
        let until = self.now_ms() + ttl.as_millis() as i64;
        for shard in 0..self.shard_count() {
            let key = self.shard_keys(shard).served();
            // Never shortens another worker's longer announcement for the same merchant.
            let mut pipe = redis::pipe();
            for m in merchants.iter().filter(|m| self.shard_of(m) == shard) {
                pipe.cmd("EVAL")
                    .arg("local c = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0') if tonumber(ARGV[2]) > c then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end return 0")
                    .arg(1)
                    .arg(&key)
                    .arg(m)
                    .arg(until)
                    .ignore();
            }
            if !pipe.is_empty() {
                pipe.query_async::<()>(&mut self.connection()).await?;
            }
        }
        Ok(())
    }

    /// Merchants some live worker serves now, sorted (every shard).
    pub async fn served_merchants(&self) -> Result<Vec<String>, LedgerError> {
        let now = self.now_ms();
        let mut live = Vec::new();
        for shard in 0..self.shard_count() {
            let all: HashMap<String, i64> =
                redis::cmd("HGETALL").arg(self.shard_keys(shard).served()).query_async(&mut self.connection()).await?;
            live.extend(all.into_iter().filter(|(_, until)| *until > now).map(|(m, _)| m));
        }
        live.sort();
        Ok(live)
    }

    /// `Ok(Ok(()))` when `merchant` is in `configured` or some live worker serves it.
    pub async fn check_merchant(
        &self,
        merchant: &str,
        configured: &[String],
    ) -> Result<Result<(), UnknownMerchant>, LedgerError> {
        if configured.iter().any(|m| m == merchant) {
            return Ok(Ok(()));
        }
        let served = self.served_merchants().await?;
        if served.iter().any(|m| m == merchant) {
            return Ok(Ok(()));
        }
        Ok(Err(unknown(merchant, configured, &served)))
    }

    /// [`Ledger::check_merchant`] for a refund about to be enqueued: a refund already in the
    /// ledger under this `(merchant, out_trade_no)` — a record, a summary or a tombstone — is
    /// never refused for its merchant (a producer retrying
    /// after "outcome unknown" must get its record back, or the conflict, not a 422 while no
    /// worker happens to be live).
    pub async fn check_refund_merchant(
        &self,
        refund: &crate::NewRefund,
        configured: &[String],
    ) -> Result<Result<(), UnknownMerchant>, LedgerError> {
        let refund = refund.clone().normalised();
        match self.check_merchant(refund.merchant(), configured).await? {
            Ok(()) => Ok(Ok(())),
            Err(_) if self.holds(refund.merchant(), &refund.out_trade_no).await? => Ok(Ok(())),
            Err(unknown) => Ok(Err(unknown)),
        }
    }

    /// Whether the ledger knows `merchant`'s refund `out_trade_no` in any form: its record, its
    /// summary (a final refund compacted), or its tombstone (archived and removed). A retry of
    /// any of them must reach the enqueue script, which answers it as the refund it was.
    async fn holds(&self, merchant: &str, out_trade_no: &str) -> Result<bool, LedgerError> {
        Ok(self.get(merchant, out_trade_no).await?.is_some()
            || self.summary(merchant, out_trade_no).await?.is_some()
            || self.tombstone(merchant, out_trade_no).await?.is_some())
    }

    /// Counts the refunds in the due-index (at most `limit` of them per shard) whose merchant no
    /// live worker serves.
    pub async fn unserved_refunds(&self, limit: usize) -> Result<Unserved, LedgerError> {
        let served: BTreeSet<String> = self.served_merchants().await?.into_iter().collect();
        let mut out = Unserved::default();
        for shard in 0..self.shard_count() {
            self.unserved_in(shard, &served, limit, &mut out).await?;
        }
        Ok(out)
    }

    async fn unserved_in(
        &self,
        shard: usize,
        served: &BTreeSet<String>,
        limit: usize,
        out: &mut Unserved,
    ) -> Result<(), LedgerError> {
        let keys = self.shard_keys(shard);
        // The due-index, then the ready list (fresh refunds no claim has looked at yet).
        let mut left = limit;
        for (read, key) in [("ZRANGE", keys.due()), ("LRANGE", keys.ready())] {
            let mut start = 0isize;
            loop {
                if left == 0 {
                    out.truncated = true;
                    return Ok(());
                }
                let ids: Vec<String> =
                    redis::cmd(read).arg(&key).arg(start).arg(start + 999).query_async(&mut self.connection()).await?;
                let mut pipe = redis::pipe();
                for id in &ids {
                    pipe.cmd("HGET").arg(keys.record(id)).arg("merchant");
                }
                let merchants: Vec<Option<String>> =
                    if ids.is_empty() { Vec::new() } else { pipe.query_async(&mut self.connection()).await? };
                for m in merchants.into_iter().flatten().filter(|m| !served.contains(m)) {
                    *out.refunds.entry(m).or_default() += 1;
                }
                left = left.saturating_sub(ids.len());
                if ids.len() < 1000 {
                    break;
                }
                start += 1000;
            }
        }
        Ok(())
    }
}

/// The refusal naming every known merchant.
pub fn unknown(merchant: &str, configured: &[String], served: &[String]) -> UnknownMerchant {
    let known: BTreeSet<String> = configured.iter().chain(served).cloned().collect();
    UnknownMerchant { merchant: merchant.to_owned(), known: known.into_iter().collect() }
}
