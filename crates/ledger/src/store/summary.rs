//! Summaries: a succeeded refund archived early. Once a refund has succeeded nothing more
//! happens to it, yet a whole record (~30 fields), its timeline and its attempts' evidence cost
//! ~2 KB of Redis a refund for the whole retention. After `summary_after` (well before the
//! retention) the workers archive it as retention would, then replace all of it with its
//! tombstone (`tomb.lua`: duplicates and conflicts are answered, its payment still counts) and a
//! summary: the fields `status` shows, one JSON array of ~200 bytes under `…}:s:<id>`, indexed
//! by when it was created in `…}:summaries` (which listings of succeeded refunds and of refunds
//! created in a window read besides their own indexes). Its timeline and evidence are read from
//! the archive, and it is no longer listed under its payment (whose refunded total its tombstone
//! keeps for the over-refund guard). Summaries go at the retention, counted from when their
//! refunds were created (for a refund, a little earlier than from when it succeeded); failed and
//! cancelled refunds (few, and the ones people read the whole story of) stay whole until then.
//! Archiving early moves a refund from one index to another: a listing paged meanwhile may miss
//! it, as it may miss any refund that changes state while it pages.

use std::collections::HashMap;
use std::time::Duration;

use redis::AsyncCommands;

use crate::error::LedgerError;
use crate::refund::placement::refund_id;
use crate::refund::record::Record;
use crate::refund::state::State;
use crate::store::Ledger;
use crate::store::keys::Keys;
use crate::store::retention::{Removed, Retained};

/// The layout field that allows succeeded refunds to be archived early: set for a ledger made by
/// this version, and by `qfrefund enable-retention --summaries` for an older one once every
/// process that reads it is of this version (an older one would not see them: its listings,
/// counts and reconciliations would leave them out, and its answers would come from tombstones).
pub const SUMMARIES_FIELD: &str = "summaries";

/// The summary format `archive_remove.lua` writes (the array's first element).
const SUMMARY_FORMAT: u64 = 2;

/// Reads a summary (`archive_remove.lua`'s `summary_of`: `[2, out_trade_no, syssn, txamt,
/// orig_txamt, mchid, udid, merchant, submits, enquiries, created_at, updated_at - created_at,
/// submitted_at - created_at (-1: none), respcd, resperr, refund_syssn, sysdtm, operator, reason]`, 0
/// for an absent text, out_trade_no absent when it is the id, merchant when it is the default
/// one) as a succeeded record: `archived` (its timeline and evidence are in the
/// archive), no request hash.
pub fn parse_summary(key: &str, raw: &str) -> Option<Record> {
    use serde_json::Value;
    let v: Vec<Value> = serde_json::from_str(raw).ok()?;
    if v.len() != 19 || v[0].as_u64()? != SUMMARY_FORMAT {
        return None;
    }
    let text = |i: usize| v[i].as_str().map(str::to_owned);
    let num = |i: usize| v[i].as_i64();
    let created = num(10)?;
    let mut h: HashMap<String, String> = HashMap::new();
    let mut put = |f: &str, val: Option<String>| {
        if let Some(val) = val {
            h.insert(f.to_owned(), val);
        }
    };
    // An out_trade_no left out is the id; a merchant left out the default one.
    let id = key.split_once("}:s:")?.1;
    put("out_trade_no", Some(text(1).unwrap_or_else(|| id.to_owned())));
    for (i, f) in [(2, "syssn"), (3, "txamt"), (4, "orig_txamt"), (5, "mchid"), (6, "udid")] {
        put(f, text(i));
    }
    put("merchant", Some(text(7).unwrap_or_else(|| crate::DEFAULT_MERCHANT.to_owned())));
    put("submits", num(8).map(|n| n.to_string()));
    put("enquiries", num(9).map(|n| n.to_string()));
    put("created_at", Some(created.to_string()));
    put("updated_at", Some((created + num(11)?).to_string()));
    put("submitted_at", num(12).filter(|d| *d >= 0).map(|d| (created + d).to_string()));
    for (i, f) in
        [(13, "respcd"), (14, "resperr"), (15, "refund_syssn"), (16, "sysdtm"), (17, "operator"), (18, "reason")]
    {
        put(f, text(i));
    }
    put("state", Some(State::Succeeded.as_str().to_owned()));
    put("payload_hash", Some("-".into()));
    let mut rec = Record::from_hash(&key.replacen("}:s:", "}:r:", 1), &h).ok()?;
    rec.payload_hash = String::new();
    rec.archived = true;
    Some(rec)
}

impl Ledger {
    /// Whether succeeded refunds may be archived early (see [`SUMMARIES_FIELD`]).
    pub async fn summaries_enabled(&self) -> Result<bool, LedgerError> {
        let base = Keys::new(&self.config.namespace, &self.config.tag);
        let v: Option<String> = self.con.clone().hget(base.layout(), SUMMARIES_FIELD).await?;
        Ok(v.as_deref() == Some("1"))
    }

    /// Allows succeeded refunds to be archived early (see [`SUMMARIES_FIELD`]); returns whether
    /// they were before.
    pub async fn enable_summaries(&self) -> Result<bool, LedgerError> {
        let before = self.summaries_enabled().await?;
        let base = Keys::new(&self.config.namespace, &self.config.tag);
        let _: () = self.con.clone().hset(base.layout(), SUMMARIES_FIELD, 1).await?;
        Ok(before)
    }

    /// Up to `limit` of `shard`'s succeeded refunds older than `after`, read whole for the
    /// archive (see [`Ledger::retained`]).
    pub async fn summarising(&self, shard: usize, after: Duration, limit: usize) -> Result<Vec<Retained>, LedgerError> {
        let cutoff = self.now_ms() - after.as_millis() as i64;
        self.read_retained(shard, &[State::Succeeded], cutoff, limit).await
    }

    /// Replaces `archived` (succeeded refunds the archive now holds durably) with their
    /// tombstones and summaries: those still succeeded and unchanged since they were read, and
    /// only while `owner` holds their shard's archiving (see `archive_remove.lua`).
    pub async fn summarise_archived(&self, owner: &str, archived: &[Retained]) -> Result<Removed, LedgerError> {
        self.remove_all(owner, archived, true).await
    }

    /// The summary of `merchant`'s refund `out_trade_no`, if it was archived early and its
    /// summary is still kept.
    pub async fn summary(&self, merchant: &str, out_trade_no: &str) -> Result<Option<Record>, LedgerError> {
        let keys = self.keys_for(merchant);
        let id = refund_id(merchant, out_trade_no);
        // As `get`: a refund kept under the bare out_trade_no (a ledger from before refunds were
        // merchant-scoped) is this merchant's when it says so.
        let mut names = vec![keys.summary(&id)];
        if id != out_trade_no {
            names.push(keys.summary(out_trade_no));
        }
        let raws: Vec<Option<String>> = self.con.clone().mget(&names).await?;
        Ok(names
            .iter()
            .zip(raws)
            .filter_map(|(k, r)| parse_summary(k, &r?))
            .find(|r| r.merchant == merchant && r.out_trade_no == out_trade_no))
    }

    /// The summaries of `ids` (of `shard`) that have one, in order.
    pub(crate) async fn summaries_of(&self, shard: usize, ids: &[String]) -> Result<Vec<Record>, LedgerError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys = self.shard_keys(shard);
        let names: Vec<String> = ids.iter().map(|id| keys.summary(id)).collect();
        let raws: Vec<Option<String>> = self.con.clone().mget(&names).await?;
        Ok(names
            .iter()
            .zip(raws)
            .filter_map(|(k, r)| {
                let raw = r?;
                let parsed = parse_summary(k, &raw);
                if parsed.is_none() {
                    tracing::warn!(key = %k, "a summary that does not read (another version's?): left out");
                }
                parsed
            })
            .collect())
    }

    /// How many of `shard`'s succeeded refunds are older than `after` but not than `retention`:
    /// what would be archived early now (those past the retention go whole).
    pub async fn summary_backlog(
        &self,
        shard: usize,
        after: Duration,
        retention: Duration,
    ) -> Result<u64, LedgerError> {
        let now = self.now_ms();
        let (cutoff, oldest) = (now - after.as_millis() as i64, now - retention.as_millis() as i64);
        Ok(self
            .con
            .clone()
            .zcount(self.shard_keys(shard).state(State::Succeeded), format!("({oldest}"), cutoff)
            .await?)
    }

    /// How many summaries `shard` keeps.
    pub async fn summary_count(&self, shard: usize) -> Result<u64, LedgerError> {
        Ok(self.con.clone().zcard(self.shard_keys(shard).summaries()).await?)
    }

    /// Removes up to `limit` of `shard`'s summaries of refunds created more than `retention`
    /// ago (their tombstones stay). Returns how many went.
    pub async fn expire_summaries(&self, shard: usize, retention: Duration, limit: usize) -> Result<u64, LedgerError> {
        let cutoff = self.now_ms() - retention.as_millis() as i64;
        let keys = self.shard_keys(shard);
        let ids: Vec<String> =
            self.con.clone().zrangebyscore_limit(keys.summaries(), "-inf", cutoff, 0, limit as isize).await?;
        if ids.is_empty() {
            return Ok(0);
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.del(keys.summary(id)).ignore();
        }
        pipe.zrem(keys.summaries(), &ids).ignore();
        pipe.query_async::<()>(&mut self.con.clone()).await?;
        Ok(ids.len() as u64)
    }
}
