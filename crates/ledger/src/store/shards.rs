//! The ledger's shards: checking at connect that this process places merchants where the
//! ledger's refunds are, and finding a refund by `(merchant, out_trade_no)`.
//!
//! A merchant's refunds live in one shard for good: a process that looked for them in another
//! would take a repeated request for a new refund. So every process checks, when it connects,
//! that the ledger was made with as many shards as it is configured for (`layout`, under the
//! configured tag), that it pins merchants where the ledger pinned them (also in `layout`), and
//! that every merchant with refunds in a shard is placed on that shard by its configuration (each
//! shard keeps the set of its merchants). Any mismatch refuses to start.

use redis::AsyncCommands;

use crate::error::LedgerError;
use crate::refund::placement::refund_id;
use crate::refund::request::DEFAULT_MERCHANT;
use crate::store::Ledger;
use crate::store::keys::Keys;

impl Ledger {
    /// Refuses a configuration whose placement disagrees with what the ledger holds (see the
    /// module's documentation); records the shard count of a new ledger.
    pub(crate) async fn check_layout(&self) -> Result<(), LedgerError> {
        let mut con = self.con.clone();
        let base = Keys::new(&self.config.namespace, &self.config.tag);
        let want = self.shard_count();
        let stored: Option<usize> = con.hget(base.layout(), "shards").await?;
        let stored = match stored {
            Some(n) => n,
            // A ledger from before shards (or a new one): one shard if it holds anything.
            None => {
                let old: u64 = con.zcard(base.created()).await?;
                let n = if old > 0 { 1 } else { want };
                let _: bool = con.hset_nx(base.layout(), "shards", n).await?;
                con.hget::<_, _, Option<usize>>(base.layout(), "shards").await?.unwrap_or(n)
            }
        };
        if stored != want {
            return Err(LedgerError::Layout(format!(
                "this ledger ({}:{{{}}}) was made with {stored} shard(s) and this process is configured for {want}: \
                 set shards = {stored} (QFREFUND_SHARDS={stored}); a ledger's shard count cannot change",
                self.config.namespace, self.config.tag
            )));
        }
        // Pins are the ledger's too, so that a process configured without one cannot place that
        // merchant's first refund elsewhere.
        let layout: std::collections::HashMap<String, String> = con.hgetall(base.layout()).await?;
        for (m, s) in layout.iter().filter_map(|(k, v)| Some((k.strip_prefix("pin:")?, v.parse::<usize>().ok()?))) {
            if self.shard_of(m) != s {
                return Err(LedgerError::Layout(format!(
                    "this ledger places merchant {m:?} on shard {s} and this process's configuration on shard {}: \
                     set merchant_shards {m} = {s} (QFREFUND_MERCHANT_SHARDS={m}={s})",
                    self.shard_of(m)
                )));
            }
        }
        for shard in 0..want {
            let merchants: Vec<String> = con.smembers(self.shard_keys(shard).merchants()).await?;
            if let Some(m) = merchants.iter().find(|m| self.shard_of(m) != shard) {
                return Err(LedgerError::Layout(format!(
                    "merchant {m:?} has refunds in shard {shard}, but this process's configuration places it in shard {}: \
                     a merchant cannot move between shards (pin it back to shard {shard})",
                    self.shard_of(m)
                )));
            }
        }
        // Only a process found consistent records its new pins.
        for (m, s) in self.config.placement.pinned() {
            if !layout.contains_key(&format!("pin:{m}")) {
                let _: bool = con.hset_nx(base.layout(), format!("pin:{m}"), *s).await?;
            }
        }
        Ok(())
    }

    /// The id of `(merchant, out_trade_no)` in its shard. A ledger written before refunds were
    /// merchant-scoped holds every merchant's refunds under the `out_trade_no` alone; such a
    /// record is found when its `merchant` field is this merchant.
    pub(crate) async fn resolve(&self, merchant: &str, out_trade_no: &str) -> Result<String, LedgerError> {
        let id = refund_id(merchant, out_trade_no);
        if merchant == DEFAULT_MERCHANT {
            return Ok(id);
        }
        let keys = self.keys_for(merchant);
        let mut con = self.con.clone();
        if con.exists::<_, bool>(keys.record(&id)).await? {
            return Ok(id);
        }
        let legacy: Option<String> = con.hget(keys.record(out_trade_no), "merchant").await?;
        Ok(if legacy.as_deref() == Some(merchant) { out_trade_no.to_owned() } else { id })
    }
}
