//! Reading tombstones (a removed refund's, a payment's), counting and sweeping them (see
//! `tomb.lua`; written by `archive_remove.lua`).

use std::collections::BTreeMap;
use std::time::Duration;

use redis::AsyncCommands;

use crate::error::LedgerError;
use crate::refund::placement::refund_id;
use crate::refund::tombstone::{Tombstone, day_of};
use crate::store::Ledger;
use crate::store::retention::{SWEEP_BUCKETS, SweepArgs, TombArgs};
use crate::store::script::{TOMB_GET, TOMB_SWEEP};

impl Ledger {
    /// The tombstone of `merchant`'s refund `out_trade_no`, if it was archived and removed.
    pub async fn tombstone(&self, merchant: &str, out_trade_no: &str) -> Result<Option<Tombstone>, LedgerError> {
        let id = refund_id(merchant, out_trade_no);
        let keys = self.keys_for(merchant);
        let mut inv = TOMB_GET.prepare_invoke();
        inv.key(keys.record(&id));
        TombArgs { kind: "x", name: &id }.push(&mut inv);
        let raw: Option<String> = inv.invoke_async(&mut self.con.clone()).await?;
        Ok(raw.and_then(|r| Tombstone::parse(merchant, out_trade_no, &r)))
    }

    /// What the tombstone of payment `syssn` in `merchant`'s shard keeps: (paid, if known;
    /// already refunded). `None`: the payment is live, or was never refunded here.
    pub async fn payment_tombstone(
        &self,
        merchant: &str,
        syssn: &str,
    ) -> Result<Option<(Option<u64>, u64)>, LedgerError> {
        self.payment_tombstone_in(self.shard_of(merchant), syssn).await
    }

    /// [`Ledger::payment_tombstone`] in `shard`.
    pub(crate) async fn payment_tombstone_in(
        &self,
        shard: usize,
        syssn: &str,
    ) -> Result<Option<(Option<u64>, u64)>, LedgerError> {
        let mut inv = TOMB_GET.prepare_invoke();
        inv.key(self.shard_keys(shard).record(""));
        TombArgs { kind: "xp", name: syssn }.push(&mut inv);
        let raw: Option<String> = inv.invoke_async(&mut self.con.clone()).await?;
        Ok(raw.and_then(|r| {
            let mut w = r.split(' ');
            let paid = w.next()?;
            let committed = w.next()?.parse().ok()?;
            Some((paid.parse().ok(), committed))
        }))
    }

    /// Removes, from a few buckets of `shard` on from where the last call stopped, the
    /// tombstones written more than `keep` ago. Returns how many went, and whether this call
    /// finished a round through every bucket.
    pub async fn sweep_tombstones(&self, shard: usize, keep: Duration) -> Result<(u64, bool), LedgerError> {
        let before_day = day_of(self.now_ms() - keep.as_millis() as i64);
        let mut inv = TOMB_SWEEP.prepare_invoke();
        inv.key(self.shard_keys(shard).record(""));
        SweepArgs { before_day, buckets: SWEEP_BUCKETS }.push(&mut inv);
        let (removed, wrapped): (u64, u8) = inv.invoke_async(&mut self.con.clone()).await?;
        Ok((removed, wrapped == 1))
    }

    /// How many tombstones `shard` holds (refunds and payments).
    pub async fn tombstone_count(&self, shard: usize) -> Result<u64, LedgerError> {
        let meta: BTreeMap<String, String> = self.con.clone().hgetall(self.shard_keys(shard).tombs()).await?;
        Ok(meta
            .iter()
            .filter(|(k, _)| {
                (k.starts_with('n') || k.starts_with('p')) && k.len() > 1 && k[1..].bytes().all(|b| b.is_ascii_digit())
            })
            .filter_map(|(_, v)| v.parse::<i64>().ok())
            .sum::<i64>()
            .max(0) as u64)
    }
}
