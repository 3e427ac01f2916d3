//! Retention: final refunds older than the retention leave Redis, after the caller has archived
//! them (an archive sink is not the ledger's business: see the `archive` crate). What stays of
//! each is a tombstone (`tomb.lua`) for `idempotency_retention`: the same request is then still
//! a duplicate with its outcome, another one under its (merchant, out_trade_no) a conflict, and
//! its payment's refunded total still counts against an over-refund.
//!
//! The steps, each bounded (a few hundred refunds, no scan of a whole index): [`Ledger::retained`]
//! reads the oldest final refunds past the cut-off with their timelines; the caller archives them
//! durably; [`Ledger::remove_archived`] removes those still final and unchanged. A crash between
//! the two leaves them in Redis and in the archive; the next round archives them again, which a
//! sink must take without writing them twice. [`Ledger::take_archiver`] keeps one archiver per
//! shard at a time; [`Ledger::sweep_tombstones`] drops tombstones past their own retention.

use std::collections::BTreeMap;
use std::time::Duration;

use redis::AsyncCommands;

use crate::error::LedgerError;
use crate::refund::state::State;
use crate::refund::timeline::TimelineEntry;
use crate::refund::tombstone::{day_of, day36};
use crate::store::Ledger;
use crate::store::args::script_args;
use crate::store::script::ARCHIVE_REMOVE;

/// The final states: the only ones retention removes.
pub const FINAL_STATES: [State; 3] = [State::Succeeded, State::Failed, State::Cancelled];

/// Refunds per removal script call (each costs a few microseconds of Redis time).
const REMOVE_PER_CALL: usize = 100;

/// Tombstone buckets one sweep call looks at (each holds about a hundred tombstones).
pub const SWEEP_BUCKETS: usize = 32;

script_args! {
    /// What `archive_remove.lua` takes; then, per refund: id, updated_at as archived, syssn.
    /// `owner`: the worker that must hold the shard's archiving.
    /// `compact`: write tombstones in their compact form (the layout's tombstones is 2).
    /// `summarise`: keep a summary of each record (see `summary.rs`).
    pub struct RemoveArgs<'a> { day: &'a str, count: usize, owner: &'a str, compact: bool, summarise: bool, states: &'a str }
}

script_args! {
    /// What `tomb_sweep.lua` takes: tombstones written before `before_day` go.
    pub struct SweepArgs { before_day: i64, buckets: usize }
}

script_args! {
    /// What `tomb_get.lua` takes: 'x' and a refund id, or 'xp' and a syssn.
    pub struct TombArgs<'a> { kind: &'a str, name: &'a str }
}

/// A final refund past the retention, as the archive takes it: every field of its record as
/// stored (so that it can be restored exactly) and its timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retained {
    pub shard: usize,
    /// Its id in the shard (see `refund::placement`).
    pub id: String,
    pub merchant: String,
    pub out_trade_no: String,
    pub state: State,
    /// When it entered its final state (ms).
    pub final_at: i64,
    /// The record's hash, field by field.
    pub fields: BTreeMap<String, String>,
    pub timeline: Vec<TimelineEntry>,
    /// The evidence of every request sent for it, oldest first.
    pub attempts: Vec<qfpay::Evidence>,
}

/// What a removal did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Removed {
    /// Removed, a tombstone left.
    pub removed: u64,
    /// Changed since it was read (an operator retried it): kept, live.
    pub changed: u64,
    /// No longer there (removed by an earlier round).
    pub gone: u64,
    /// The shard's archiving was no longer this worker's (its lease ran out): nothing removed.
    pub lost: bool,
}

/// The layout field (`<namespace>:{<tag>}:layout`) that allows retention to remove refunds:
/// set for a ledger made by this version, and by `qfrefund enable-retention` for an older one
/// once no process from before tombstones runs (such a process would take the same request
/// again for a new refund, and would not count a payment's archived refunds).
/// Its value is the tombstones' form: `1` text (what the first version with tombstones reads),
/// `2` compact (see `tomb.lua`; a third of the memory for a long out_trade_no). Processes of the
/// first version see retention disabled at `2`, so they never write text tombstones there.
pub const TOMBSTONES_FIELD: &str = "tombstones";

/// What [`TOMBSTONES_FIELD`] says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TombstoneForm {
    /// Retention may not remove refunds (a ledger from before tombstones).
    Disabled,
    /// Tombstones are written as text.
    Text,
    /// Tombstones are written compactly.
    Compact,
}

/// The field a compact tombstone of `name` is stored under (see `tomb.lua`): 8 bytes of its
/// SHA-1.
pub fn tomb_field(name: &str) -> Vec<u8> {
    sha1_smol::Sha1::from(name).digest().bytes()[..8].to_vec()
}

/// The bucket hash of `tomb.lua` (the same function: both must place a name alike).
pub fn bucket_hash(name: &str) -> u64 {
    name.bytes().fold(0u64, |h, b| (h * 31 + u64::from(b)) % 2_147_483_647)
}

impl Ledger {
    /// Up to `limit` ids of final refunds of `shard` that entered their state before `cutoff`
    /// (ms), oldest first, with that time and the state.
    pub(crate) async fn retention_due(
        &self,
        shard: usize,
        states: &[State],
        cutoff: i64,
        limit: usize,
    ) -> Result<Vec<(i64, String, State)>, LedgerError> {
        let keys = self.shard_keys(shard);
        let mut pipe = redis::pipe();
        for &s in states {
            pipe.cmd("ZRANGE")
                .arg(keys.state(s))
                .arg("-inf")
                .arg(cutoff)
                .arg("BYSCORE")
                .arg("LIMIT")
                .arg(0)
                .arg(limit)
                .arg("WITHSCORES");
        }
        let lists: Vec<Vec<(String, f64)>> = pipe.query_async(&mut self.con.clone()).await?;
        let mut all: Vec<(i64, String, State)> = lists
            .into_iter()
            .zip(states.iter().copied())
            .flat_map(|(l, s)| l.into_iter().map(move |(id, at)| (at as i64, id, s)))
            .collect();
        all.sort();
        all.truncate(limit);
        Ok(all)
    }

    /// How many final refunds of `shard` are older than `retention` now: what retention would
    /// archive (every index counted, no record read).
    pub async fn retention_backlog(&self, shard: usize, retention: Duration) -> Result<u64, LedgerError> {
        let cutoff = self.now_ms() - retention.as_millis() as i64;
        let keys = self.shard_keys(shard);
        let mut pipe = redis::pipe();
        for s in FINAL_STATES {
            pipe.zcount(keys.state(s), "-inf", cutoff);
        }
        let counts: Vec<u64> = pipe.query_async(&mut self.con.clone()).await?;
        Ok(counts.into_iter().sum())
    }

    /// The oldest (up to `limit`) final refunds of `shard` older than `retention`, read whole
    /// with their timelines (one round trip for the ids, one for the records). An index entry
    /// without a record (nothing to archive) is cleared on the way.
    pub async fn retained(
        &self,
        shard: usize,
        retention: Duration,
        limit: usize,
    ) -> Result<Vec<Retained>, LedgerError> {
        let cutoff = self.now_ms() - retention.as_millis() as i64;
        self.read_retained(shard, &FINAL_STATES, cutoff, limit).await
    }

    /// The oldest (up to `limit`) refunds in `states` of `shard` that entered them before
    /// `cutoff` (ms), read whole; leftover index entries cleared on the way.
    pub(crate) async fn read_retained(
        &self,
        shard: usize,
        states: &[State],
        cutoff: i64,
        limit: usize,
    ) -> Result<Vec<Retained>, LedgerError> {
        let due = self.retention_due(shard, states, cutoff, limit).await?;
        if due.is_empty() {
            return Ok(Vec::new());
        }
        let keys = self.shard_keys(shard);
        let mut pipe = redis::pipe();
        for (_, id, _) in &due {
            pipe.hgetall(keys.record(id)).lrange(keys.timeline(id), 0, -1).lrange(keys.evidence(id), 0, -1);
        }
        let replies: Vec<redis::Value> = pipe.query_async(&mut self.con.clone()).await?;
        let mut out = Vec::with_capacity(due.len());
        let mut stale = redis::pipe();
        let mut any_stale = false;
        let mut replies = replies.into_iter();
        for (final_at, id, state) in due {
            let (Some(h), Some(t), Some(e)) = (replies.next(), replies.next(), replies.next()) else { break };
            let fields: BTreeMap<String, String> = redis::from_redis_value(h).map_err(redis::RedisError::from)?;
            let raw: Vec<String> = redis::from_redis_value(t).map_err(redis::RedisError::from)?;
            let evidence: Vec<String> = redis::from_redis_value(e).map_err(redis::RedisError::from)?;
            // An index entry with no record, or whose record is not in that state: a leftover, not
            // a refund to archive (archiving a live refund would remove nothing, for ever). Cleared.
            if fields.is_empty() || fields.get("state").map(String::as_str) != Some(state.as_str()) {
                tracing::warn!(shard, id = %id, index = %state, record = ?fields.get("state"), "a leftover final-state index entry: cleared");
                stale.zrem(keys.state(state), &id).ignore();
                if fields.is_empty() {
                    stale.zrem(keys.created(), &id).ignore();
                }
                any_stale = true;
                continue;
            }
            let merchant = fields.get("merchant").cloned().unwrap_or_default();
            let out_trade_no = fields.get("out_trade_no").cloned().unwrap_or_else(|| id.clone());
            let timeline = raw.iter().filter_map(|e| TimelineEntry::parse(e)).collect();
            // Evidence that does not read is archived as it is, never dropped.
            let attempts = evidence.iter().map(|e| crate::store::evidence::read(e)).collect();
            out.push(Retained { shard, id, merchant, out_trade_no, state, final_at, fields, timeline, attempts });
        }
        if any_stale {
            stale.query_async::<()>(&mut self.con.clone()).await?;
        }
        Ok(out)
    }

    /// Removes `archived` (refunds the archive now holds durably) from Redis, leaving their
    /// tombstones: those still final and unchanged since they were read (see `archive_remove.lua`),
    /// and only while `owner` holds their shard's archiving.
    pub async fn remove_archived(&self, owner: &str, archived: &[Retained]) -> Result<Removed, LedgerError> {
        self.remove_all(owner, archived, false).await
    }

    /// [`Ledger::remove_archived`], keeping a summary of each when `summarise`.
    pub(crate) async fn remove_all(
        &self,
        owner: &str,
        archived: &[Retained],
        summarise: bool,
    ) -> Result<Removed, LedgerError> {
        let mut total = Removed::default();
        for shard in 0..self.shard_count() {
            let items: Vec<(String, String, String, usize)> = archived
                .iter()
                .filter(|r| r.shard == shard)
                .map(|r| {
                    let f = |k: &str| r.fields.get(k).cloned().unwrap_or_default();
                    (r.id.clone(), f("updated_at"), f("syssn"), r.attempts.len())
                })
                .collect();
            let r = self.remove_ids(shard, owner, &items, summarise).await?;
            total.removed += r.removed;
            total.changed += r.changed;
            total.gone += r.gone;
            total.lost |= r.lost;
        }
        Ok(total)
    }

    /// `items`: (id, updated_at as archived, syssn, evidence entries archived).
    async fn remove_ids(
        &self,
        shard: usize,
        owner: &str,
        items: &[(String, String, String, usize)],
        summarise: bool,
    ) -> Result<Removed, LedgerError> {
        let keys = self.shard_keys(shard);
        let day = day36(day_of(self.now_ms()));
        let mut out = Removed::default();
        if items.is_empty() {
            return Ok(out);
        }
        let compact = self.tombstone_form().await? == TombstoneForm::Compact;
        // The states the layout lets be archived early, as their tombstone letters (the script
        // refuses any other: see `archive_remove.lua`).
        let states: String = if summarise {
            self.summarised_states().await?.iter().map(|s| &s.as_str()[..1]).collect()
        } else {
            String::new()
        };
        for part in items.chunks(REMOVE_PER_CALL) {
            let mut inv = ARCHIVE_REMOVE.prepare_invoke();
            for (i, (id, _, syssn, _)) in part.iter().enumerate() {
                if i == 0 {
                    for k in keys.script_keys(id, syssn) {
                        inv.key(k);
                    }
                    inv.key(keys.archiver());
                    for k in keys.every_summaries() {
                        inv.key(k);
                    }
                } else {
                    inv.key(keys.record(id)).key(keys.payment(syssn));
                }
            }
            RemoveArgs { day: &day, count: part.len(), owner, compact, summarise, states: &states }.push(&mut inv);
            for (id, updated_at, syssn, evidence) in part {
                inv.arg(id).arg(updated_at).arg(syssn).arg(evidence);
            }
            let words: Vec<String> = inv.invoke_async(&mut self.con.clone()).await?;
            if words.first().map(String::as_str) == Some("lost") {
                out.lost = true;
                return Ok(out);
            }
            for w in words {
                match w.as_str() {
                    "removed" => out.removed += 1,
                    "changed" => out.changed += 1,
                    _ => out.gone += 1,
                }
            }
        }
        Ok(out)
    }

    /// Whether refunds may leave Redis, and how their tombstones are written (see
    /// [`TOMBSTONES_FIELD`]).
    pub async fn tombstone_form(&self) -> Result<TombstoneForm, LedgerError> {
        let base = crate::store::keys::Keys::new(&self.config.namespace, &self.config.tag);
        let v: Option<String> = self.con.clone().hget(base.layout(), TOMBSTONES_FIELD).await?;
        Ok(match v.as_deref() {
            Some("1") => TombstoneForm::Text,
            Some("2") => TombstoneForm::Compact,
            _ => TombstoneForm::Disabled,
        })
    }

    /// Whether refunds may leave Redis (see [`TOMBSTONES_FIELD`]).
    pub async fn retention_enabled(&self) -> Result<bool, LedgerError> {
        Ok(self.tombstone_form().await? != TombstoneForm::Disabled)
    }

    /// Allows retention to remove refunds from this ledger (run once no process from before
    /// tombstones writes it), with text tombstones, which the first version with tombstones reads
    /// too; `compact`: with compact tombstones, which only this version reads (run once no process
    /// of an older version reads or writes the ledger). Never goes back from compact. Returns the
    /// form before.
    pub async fn enable_retention(&self, compact: bool) -> Result<TombstoneForm, LedgerError> {
        let before = self.tombstone_form().await?;
        let base = crate::store::keys::Keys::new(&self.config.namespace, &self.config.tag);
        if compact {
            let _: () = self.con.clone().hset(base.layout(), TOMBSTONES_FIELD, 2).await?;
        } else {
            let _: bool = self.con.clone().hset_nx(base.layout(), TOMBSTONES_FIELD, 1).await?;
        }
        Ok(before)
    }
}
