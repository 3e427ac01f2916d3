//! The ledger's shards: checking at connect that this process places merchants where the
//! ledger's refunds are, and ending an upgraded ledger's shared ids (`scope_merchants`).
//!
//! A merchant's refunds live in one shard for good: a process that looked for them in another
//! would take a repeated request for a new refund. So every process checks, when it connects,
//! that the ledger was made with as many shards as it is configured for (`layout`, under the
//! configured tag), that it pins merchants where the ledger pinned them (also in `layout`), and
//! that every merchant with refunds in a shard is placed on that shard by its configuration (each
//! shard keeps the set of its merchants). Any mismatch refuses to start.
//!
//! Processes already running when a merchant is first pinned still place it by its hash: before
//! the pin is recorded, the merchant is *excluded* from its hash shard — atomically with checking
//! that the shard holds none of its refunds — and the enqueue script refuses an excluded merchant.
//! So one merchant's refunds can never be written to two shards.

use std::collections::{BTreeMap, HashMap};

use redis::AsyncCommands;

use crate::error::LedgerError;
use crate::refund::placement::stable_hash;
use crate::refund::state::State;
use crate::store::Ledger;
use crate::store::keys::Keys;

/// Excludes ARGV[1] from a shard unless the shard (KEYS[1]: its merchants) holds its refunds.
const EXCLUDE: &str = "if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return 0 end \
                       redis.call('SADD', KEYS[2], ARGV[1]) return 1";

impl Ledger {
    /// Refuses a configuration whose placement disagrees with what the ledger holds (see the
    /// module's documentation); records the shard count and pins of a new ledger, and marks a
    /// ledger from before merchant scoping (`legacy_ids`, see `enqueue_one.lua`).
    pub(crate) async fn check_layout(&self) -> Result<(), LedgerError> {
        let mut con = self.con.clone();
        let base = Keys::new(&self.config.namespace, &self.config.tag);
        let want = self.shard_count();
        let stored: Option<usize> = con.hget(base.layout(), "shards").await?;
        let stored = match stored {
            Some(n) => n,
            // A ledger from before shards (or a new one): one shard if it holds anything. Its
            // other merchants' refunds keep their ids until `scope_merchants`.
            None => {
                let old = self.held_before(&base).await?;
                let n = if old { 1 } else { want };
                if !self.config.record_layout {
                    // A reader of an empty ledger has nothing to disagree with; of an old one,
                    // it must read one shard.
                    return if old && want != 1 { Err(shard_count(&self.config, 1, want)) } else { Ok(()) };
                }
                let mut pipe = redis::pipe();
                pipe.hset_nx(base.layout(), "shards", n).ignore();
                if old {
                    pipe.hset_nx(base.layout(), "legacy_ids", 1).ignore();
                } else {
                    // A new ledger: every process that will ever write it reads compact tombstones.
                    pipe.hset_nx(base.layout(), crate::store::retention::TOMBSTONES_FIELD, 2).ignore();
                    pipe.hset_nx(base.layout(), crate::store::summary::SUMMARIES_FIELD, 1).ignore();
                    pipe.hset_nx(base.layout(), crate::store::summary::FINAL_SUMMARIES_FIELD, 1).ignore();
                    pipe.hset_nx(base.layout(), crate::store::fresh::COMPACT_QUEUE_FIELD, 1).ignore();
                }
                pipe.query_async::<()>(&mut con).await?;
                con.hget::<_, _, Option<usize>>(base.layout(), "shards").await?.unwrap_or(n)
            }
        };
        if stored != want {
            return Err(shard_count(&self.config, stored, want));
        }
        for (m, s) in self.recorded_layout().await?.1 {
            if self.shard_of(&m) != s {
                return Err(misplaced(&m, s, self.shard_of(&m)));
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
        // A pin takes effect only once its merchant is excluded from the shard its hash names.
        let pins = if self.config.record_layout { self.config.placement.pinned().clone() } else { Default::default() };
        for (m, s) in &pins {
            let hashed = (stable_hash(m) % want as u32) as usize;
            if hashed != *s {
                let keys = self.shard_keys(hashed);
                let excluded: i64 = redis::cmd("EVAL")
                    .arg(EXCLUDE)
                    .arg(2)
                    .arg(keys.merchants())
                    .arg(keys.excluded())
                    .arg(m)
                    .query_async(&mut con)
                    .await?;
                if excluded == 0 {
                    return Err(LedgerError::Layout(format!(
                        "merchant {m:?} has refunds in shard {hashed}, where its name places it: it cannot be pinned to \
                         shard {s} now"
                    )));
                }
            }
            let _: bool = con.hset_nx(base.layout(), format!("pin:{m}"), *s).await?;
            let now: Option<usize> = con.hget(base.layout(), format!("pin:{m}")).await?;
            if now != Some(*s) {
                return Err(misplaced(m, now.unwrap_or(*s), *s));
            }
        }
        Ok(())
    }

    /// Whether the ledger under `base` holds refunds (any index of a ledger of one shard).
    async fn held_before(&self, base: &Keys) -> Result<bool, LedgerError> {
        let mut pipe = redis::pipe();
        pipe.exists(base.due()).exists(base.created()).exists(base.ready());
        for s in State::ALL {
            pipe.exists(base.state(s));
        }
        let found: Vec<bool> = pipe.query_async(&mut self.con.clone()).await?;
        Ok(found.into_iter().any(|f| f))
    }

    /// The layout recorded for this ledger: its shard count (`None`: no process that records
    /// layouts — a worker, the API, the CLI — has connected to it yet) and its pinned merchants.
    /// A producer that does not record layouts reads it to refuse writing where no worker looks.
    pub async fn recorded_layout(&self) -> Result<(Option<usize>, BTreeMap<String, usize>), LedgerError> {
        let base = Keys::new(&self.config.namespace, &self.config.tag);
        let layout: HashMap<String, String> = self.con.clone().hgetall(base.layout()).await?;
        let shards = layout.get("shards").and_then(|v| v.parse().ok());
        let pins = layout
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix("pin:")?.to_owned(), v.parse::<usize>().ok()?)))
            .collect();
        Ok((shards, pins))
    }

    /// Ends the compatibility with processes from before refunds were merchant-scoped: from now
    /// on a merchant's new refund is its own even when another merchant used its out_trade_no.
    /// Run it once no process of that version runs. Returns whether the ledger was in that mode.
    pub async fn scope_merchants(&self) -> Result<bool, LedgerError> {
        let base = Keys::new(&self.config.namespace, &self.config.tag);
        let removed: u64 = self.con.clone().hdel(base.layout(), "legacy_ids").await?;
        Ok(removed > 0)
    }
}

fn shard_count(config: &crate::store::LedgerConfig, stored: usize, want: usize) -> LedgerError {
    LedgerError::Layout(format!(
        "this ledger ({}:{{{}}}) was made with {stored} shard(s) and this process is configured for {want}: \
         set shards = {stored} (QFREFUND_SHARDS={stored}); a ledger's shard count cannot change",
        config.namespace, config.tag
    ))
}

fn misplaced(merchant: &str, ledger: usize, ours: usize) -> LedgerError {
    LedgerError::Layout(format!(
        "this ledger places merchant {merchant:?} on shard {ledger} and this process's configuration on shard {ours}: \
         set merchant_shards {merchant} = {ledger} (QFREFUND_MERCHANT_SHARDS={merchant}={ledger})"
    ))
}
