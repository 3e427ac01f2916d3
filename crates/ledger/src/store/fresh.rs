//! Fresh refunds: a queued refund kept as small as Redis allows. `fresh.lua` says what a fresh
//! refund holds (its record, its entry in the queued index, its outcome-stream entry, its id on
//! the ready list) and when it is given the rest (its created-index entry, its timeline, its place
//! under its payment): when the first claim looks at it, or when it first leaves `queued` some
//! other way.
//!
//! Gated by the layout field [`COMPACT_QUEUE_FIELD`]: a process from before fresh refunds claims
//! from the due-index only and never settles one (it would leave a fresh refund unclaimed, or
//! claim it without putting it under its payment), so a ledger such processes may still write
//! enqueues the old way until `qfrefund enable-retention --compact-queue` is run, once none is
//! left. New ledgers enqueue fresh from the start. Every process of this version reads both forms,
//! and follows a switch (either way) within [`LAYOUT_REREAD`].

use std::sync::atomic::Ordering;

use redis::AsyncCommands;

use crate::error::LedgerError;
use crate::store::Ledger;
use crate::store::keys::Keys;

/// The layout field (`1`) that makes enqueues fresh (see the module's documentation).
pub const COMPACT_QUEUE_FIELD: &str = "compact_queue";

/// How often an enqueueing process reads [`COMPACT_QUEUE_FIELD`] again.
pub const LAYOUT_REREAD: std::time::Duration = std::time::Duration::from_secs(60);

impl Ledger {
    /// Whether this process enqueues fresh refunds (as the layout said when it connected, or
    /// since it enabled them).
    pub fn compact_queue(&self) -> bool {
        self.compact_queue.load(Ordering::Relaxed)
    }

    /// Reads [`COMPACT_QUEUE_FIELD`] again if it was last read over [`LAYOUT_REREAD`] ago (an
    /// error keeps what was read before: the enqueue that follows meets it anyway).
    pub(crate) async fn reread_compact_queue(&self) {
        let now = self.now_ms();
        let last = self.compact_read_at.load(Ordering::Relaxed);
        if now - last >= LAYOUT_REREAD.as_millis() as i64
            && self.compact_read_at.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
            && let Err(e) = self.compact_queue_enabled().await
        {
            tracing::debug!(error = %e, "could not read the ledger's layout again");
        }
    }

    /// Whether the ledger's layout asks for fresh enqueues (see [`COMPACT_QUEUE_FIELD`]).
    pub async fn compact_queue_enabled(&self) -> Result<bool, LedgerError> {
        let base = Keys::new(&self.config.namespace, &self.config.tag);
        let v: Option<String> = self.con.clone().hget(base.layout(), COMPACT_QUEUE_FIELD).await?;
        let on = v.as_deref() == Some("1");
        self.compact_queue.store(on, Ordering::Relaxed);
        Ok(on)
    }

    /// Makes enqueues fresh from now on, or (`on` false) the old way again (see
    /// [`COMPACT_QUEUE_FIELD`]); returns whether they were fresh before.
    pub async fn set_compact_queue(&self, on: bool) -> Result<bool, LedgerError> {
        let before = self.compact_queue_enabled().await?;
        let base = Keys::new(&self.config.namespace, &self.config.tag);
        if on {
            let _: () = self.con.clone().hset(base.layout(), COMPACT_QUEUE_FIELD, 1).await?;
        } else {
            let _: () = self.con.clone().hdel(base.layout(), COMPACT_QUEUE_FIELD).await?;
        }
        self.compact_queue.store(on, Ordering::Relaxed);
        Ok(before)
    }

    /// Fresh refunds on the ready list, every shard (with those withdrawn since they were
    /// enqueued, until a claim passes them over): what must reach 0 before a process from before
    /// fresh refunds may work the ledger again.
    pub async fn ready_total(&self) -> Result<u64, LedgerError> {
        let mut n = 0;
        for shard in 0..self.shard_count() {
            n += self.ready_len(shard).await?;
        }
        Ok(n)
    }

    /// Up to `n` of `shard`'s fresh refunds created in `[from, to]`, oldest first, by their
    /// entries in the queued index (which are their creation times): they are not in the created
    /// index yet. A refund queued again by an operator is in that index by when it was, and in
    /// the created index by its creation: it is left out here, where its created-index entry has
    /// another time. One settled since the queued index was read is in the created index at the
    /// same time.
    pub(crate) async fn fresh_created_between(
        &self,
        shard: usize,
        from: i64,
        to: i64,
        n: usize,
    ) -> Result<Vec<(i64, String)>, LedgerError> {
        let keys = self.shard_keys(shard);
        let mut out = Vec::new();
        let mut start = 0;
        // Read on past the refunds queued again (they take no place in the answer).
        while out.len() < n {
            let queued: Vec<(String, f64)> = self
                .con
                .clone()
                .zrangebyscore_limit_withscores(keys.state(crate::State::Queued), from, to, start, n as isize)
                .await?;
            if queued.is_empty() {
                break;
            }
            start += queued.len() as isize;
            let mut cmd = redis::cmd("ZMSCORE");
            cmd.arg(keys.created());
            for (id, _) in &queued {
                cmd.arg(id);
            }
            let created: Vec<Option<f64>> = cmd.query_async(&mut self.con.clone()).await?;
            let last = queued.len() < n;
            out.extend(
                queued
                    .into_iter()
                    .zip(created)
                    .filter(|((_, at), c)| c.is_none_or(|c| c == *at))
                    .map(|((id, at), _)| (at as i64, id)),
            );
            if last {
                break;
            }
        }
        out.truncate(n);
        Ok(out)
    }

    /// Ids on `shard`'s ready list (fresh refunds not looked at by a claim yet; one withdrawn
    /// meanwhile stays listed until a claim passes it over).
    pub async fn ready_len(&self, shard: usize) -> Result<u64, LedgerError> {
        Ok(self.con.clone().llen(self.shard_keys(shard).ready()).await?)
    }
}

/// Restores a record's whole request hash if it still holds the half a fresh enqueue kept:
/// ARGV[1] the half read, ARGV[2] the whole one. Returns 1 if it wrote.
const RESTORE_HASH: &str = "if redis.call('HGET', KEYS[1], 'payload_hash') ~= ARGV[1] then return 0 end
    redis.call('HSET', KEYS[1], 'payload_hash', ARGV[2])
    return 1";

impl Ledger {
    /// Gives every record that keeps half its request hash (enqueued fresh) the whole one back,
    /// computed again from the request it holds: a version from before fresh refunds compares
    /// whole hashes, and would answer the same request again as a conflict. For a rollback, once
    /// enqueues are no longer fresh (see [`Ledger::set_compact_queue`]). Walks every refund in
    /// Redis (the created index, and the queued one for fresh refunds) in pipelined chunks.
    /// Returns how many it restored.
    pub async fn restore_whole_hashes(&self) -> Result<u64, LedgerError> {
        static RESTORE: std::sync::LazyLock<redis::Script> =
            std::sync::LazyLock::new(|| redis::Script::new(RESTORE_HASH));
        let mut restored = 0;
        for shard in 0..self.shard_count() {
            let keys = self.shard_keys(shard).clone();
            for index in [keys.created(), keys.state(crate::State::Queued)] {
                let mut start = 0isize;
                loop {
                    let ids: Vec<String> = self.con.clone().zrange(&index, start, start + 999).await?;
                    if ids.is_empty() {
                        break;
                    }
                    start += ids.len() as isize;
                    let mut pipe = redis::pipe();
                    for id in &ids {
                        pipe.hget(keys.record(id), "payload_hash");
                    }
                    let hashes: Vec<Option<String>> = pipe.query_async(&mut self.con.clone()).await?;
                    let halves: Vec<String> = ids
                        .into_iter()
                        .zip(hashes)
                        .filter(|(_, h)| h.as_ref().is_some_and(|h| h.len() == 32))
                        .map(|(id, _)| id)
                        .collect();
                    for rec in self.get_many(shard, &halves).await? {
                        let whole = rec.request().payload_hash();
                        if rec.archived || !rec.same_payload(&whole) {
                            continue;
                        }
                        let n: i64 = RESTORE
                            .key(keys.record(&rec.id))
                            .arg(&rec.payload_hash)
                            .arg(&whole)
                            .invoke_async(&mut self.con.clone())
                            .await?;
                        restored += n as u64;
                    }
                }
            }
        }
        Ok(restored)
    }
}
