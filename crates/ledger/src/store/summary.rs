//! Summaries: a final refund archived early. Once a refund is final nothing more happens to it,
//! yet a whole record (~30 fields), its timeline and its attempts' evidence cost ~2 KB of Redis a
//! refund for the whole retention. After `summary_after` (well before the retention) the workers
//! archive it as retention would, then replace all of it with its tombstone (`tomb.lua`:
//! duplicates and conflicts are answered, its payment still counts) and a summary: the fields
//! `status` shows (the reason where a person settled it or QFPay gave no answer), one JSON array of ~200 bytes
//! under `…}:s:<id>`, indexed by when it was created in its state's summaries index
//! (`…}:summaries` for succeeded refunds, `…}:summaries:failed`, `…}:summaries:cancelled`), which
//! listings of that state and of refunds created in a window read besides their own indexes. Its
//! timeline and evidence are read from the archive, and it is no longer listed under its payment
//! (whose refunded total its tombstone keeps for the over-refund guard). Summaries go at the
//! retention, counted from when their refunds were created (a little earlier than from when they
//! became final). Archiving early moves a refund from one index to another: a listing paged
//! meanwhile may miss it, as it may miss any refund that changes state while it pages.

use std::collections::HashMap;
use std::time::Duration;

use redis::AsyncCommands;

use crate::error::LedgerError;
use crate::refund::placement::refund_id;
use crate::refund::record::Record;
use crate::refund::state::State;
use crate::store::Ledger;
use crate::store::keys::{Keys, SUMMARISED};
use crate::store::retention::{Removed, Retained};

/// The layout field that allows final refunds to be archived early: set for a ledger made by
/// this version, and by `qfrefund enable-retention --summaries` for an older one once every
/// process that reads it is of this version (an older one would not see them: its listings,
/// counts and reconciliations would leave them out, and its answers would come from tombstones).
/// `1`, as the version that brought summaries set it: succeeded refunds only.
pub const SUMMARIES_FIELD: &str = "summaries";

/// The layout field that allows failed and cancelled refunds to be archived early as well (with
/// [`SUMMARIES_FIELD`]): a field of its own, so that a process of the version before them, which
/// reads only [`SUMMARIES_FIELD`], goes on archiving succeeded refunds early on a ledger that has
/// both (it does not see the others' summaries: its listings leave them out).
pub const FINAL_SUMMARIES_FIELD: &str = "final_summaries";

/// The summary formats `archive_remove.lua` writes (the array's first element): a succeeded
/// refund's, and a failed or cancelled one's (its state letter last).
const SUCCEEDED_FORMAT: u64 = 2;
const FINAL_FORMAT: u64 = 3;

/// Reads a summary (`archive_remove.lua`'s `summary_of`: `[2, out_trade_no, syssn, txamt,
/// orig_txamt, mchid, udid, merchant, submits, enquiries, created_at, updated_at - created_at,
/// submitted_at - created_at (-1: none), respcd, resperr, refund_syssn, sysdtm, operator, reason]`, 0
/// for an absent text, out_trade_no absent when it is the id, merchant when it is the default
/// one) as a succeeded record — or, format 3, as a failed or cancelled one: the same, then
/// its state letter — `archived` (its timeline and evidence are in the
/// archive), no request hash.
pub fn parse_summary(key: &str, raw: &str) -> Option<Record> {
    use serde_json::Value;
    let v: Vec<Value> = serde_json::from_str(raw).ok()?;
    let state = match (v.len(), v.first()?.as_u64()?) {
        (19, SUCCEEDED_FORMAT) => State::Succeeded,
        (20, FINAL_FORMAT) => match v[19].as_str()? {
            "f" => State::Failed,
            "c" => State::Cancelled,
            "s" => State::Succeeded,
            _ => return None,
        },
        _ => return None,
    };
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
    put("state", Some(state.as_str().to_owned()));
    put("payload_hash", Some("-".into()));
    let mut rec = Record::from_hash(&key.replacen("}:s:", "}:r:", 1), &h).ok()?;
    rec.payload_hash = String::new();
    rec.archived = true;
    Some(rec)
}

impl Ledger {
    /// The final states whose refunds may be archived early: none, succeeded only
    /// ([`SUMMARIES_FIELD`]), or every final state (with [`FINAL_SUMMARIES_FIELD`]).
    pub async fn summarised_states(&self) -> Result<&'static [State], LedgerError> {
        let base = Keys::new(&self.config.namespace, &self.config.tag);
        let v: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(base.layout())
            .arg(SUMMARIES_FIELD)
            .arg(FINAL_SUMMARIES_FIELD)
            .query_async(&mut self.con.clone())
            .await?;
        let on = |i: usize| v.get(i).and_then(|f| f.as_deref()) == Some("1");
        Ok(match (on(0), on(1)) {
            (true, true) => &SUMMARISED,
            (true, false) => &SUMMARISED[..1],
            _ => &[],
        })
    }

    /// Whether any refund may be archived early (see [`SUMMARIES_FIELD`]).
    pub async fn summaries_enabled(&self) -> Result<bool, LedgerError> {
        Ok(!self.summarised_states().await?.is_empty())
    }

    /// Allows every final refund to be archived early (see [`SUMMARIES_FIELD`] and
    /// [`FINAL_SUMMARIES_FIELD`]); returns the states that were before.
    pub async fn enable_summaries(&self) -> Result<&'static [State], LedgerError> {
        let before = self.summarised_states().await?;
        let base = Keys::new(&self.config.namespace, &self.config.tag);
        let _: () = redis::pipe()
            .hset(base.layout(), SUMMARIES_FIELD, 1)
            .hset(base.layout(), FINAL_SUMMARIES_FIELD, 1)
            .query_async(&mut self.con.clone())
            .await?;
        Ok(before)
    }

    /// Up to `limit` of `shard`'s refunds in a state archived early (see
    /// [`Ledger::summarised_states`]) older than `after`, read whole for the archive (see
    /// [`Ledger::retained`]).
    pub async fn summarising(&self, shard: usize, after: Duration, limit: usize) -> Result<Vec<Retained>, LedgerError> {
        let cutoff = self.now_ms() - after.as_millis() as i64;
        let states = self.summarised_states().await?;
        if states.is_empty() {
            return Ok(Vec::new());
        }
        self.read_retained(shard, states, cutoff, limit).await
    }

    /// Replaces `archived` (final refunds the archive now holds durably) with their tombstones
    /// and summaries: those unchanged since they were read, in a state the layout lets be
    /// archived early, and only while `owner` holds their shard's archiving (see
    /// `archive_remove.lua`).
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

    /// How many of `shard`'s refunds in a state archived early are older than `after` but not
    /// than `retention`: what would be archived early now (those past the retention go whole).
    pub async fn summary_backlog(
        &self,
        shard: usize,
        after: Duration,
        retention: Duration,
    ) -> Result<u64, LedgerError> {
        let now = self.now_ms();
        let (cutoff, oldest) = (now - after.as_millis() as i64, now - retention.as_millis() as i64);
        let mut n = 0;
        for s in self.summarised_states().await? {
            n += self
                .con
                .clone()
                .zcount::<_, _, _, u64>(self.shard_keys(shard).state(*s), format!("({oldest}"), cutoff)
                .await?;
        }
        Ok(n)
    }

    /// How many summaries `shard` keeps.
    pub async fn summary_count(&self, shard: usize) -> Result<u64, LedgerError> {
        let mut n = 0;
        for index in self.shard_keys(shard).every_summaries() {
            n += self.con.clone().zcard::<_, u64>(index).await?;
        }
        Ok(n)
    }

    /// Removes up to `limit` of `shard`'s summaries of refunds created more than `retention`
    /// ago (their tombstones stay). Returns how many went.
    pub async fn expire_summaries(&self, shard: usize, retention: Duration, limit: usize) -> Result<u64, LedgerError> {
        let cutoff = self.now_ms() - retention.as_millis() as i64;
        let keys = self.shard_keys(shard);
        let mut gone = 0;
        for index in keys.every_summaries() {
            let left = limit.saturating_sub(gone);
            if left == 0 {
                break;
            }
            let ids: Vec<String> =
                self.con.clone().zrangebyscore_limit(&index, "-inf", cutoff, 0, left as isize).await?;
            if ids.is_empty() {
                continue;
            }
            let mut pipe = redis::pipe();
            for id in &ids {
                pipe.del(keys.summary(id)).ignore();
            }
            pipe.zrem(&index, &ids).ignore();
            pipe.query_async::<()>(&mut self.con.clone()).await?;
            gone += ids.len();
        }
        Ok(gone as u64)
    }
}
