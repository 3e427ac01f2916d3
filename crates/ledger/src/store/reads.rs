//! Reading the ledger: records, state listings and pages, payments, the outcome stream. Whatever
//! spans merchants reads every shard and merges (state listings by when refunds entered the
//! state, streams by entry id).

use std::collections::HashMap;

use redis::AsyncCommands;

use crate::error::LedgerError;
use crate::refund::event::Event;
use crate::refund::record::Record;
use crate::refund::state::State;
use crate::refund::timeline::{CUT, TimelineEntry, restore_texts};
use crate::store::Ledger;
use crate::store::args::script_args;
use crate::store::keys::Keys;
use crate::store::script::PAGE;

/// Where a page of a state listing ended: the next page starts after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageCursor {
    pub score: i64,
    pub member: String,
}

impl PageCursor {
    /// An opaque token for clients (`<score>.<member>`; members never contain a control char).
    pub fn encode(&self) -> String {
        format!("{}.{}", self.score, self.member)
    }

    pub fn decode(s: &str) -> Option<Self> {
        let (score, member) = s.split_once('.')?;
        Some(Self { score: score.parse().ok()?, member: member.to_owned() })
    }
}

script_args! {
    /// What `page.lua` takes: the cursor (`score` '' = from the start) and the page size.
    pub struct PageArgs<'a> { score: String, member: &'a str, limit: usize }
}

impl Ledger {
    /// `merchant`'s refund `out_trade_no`, if there is one (one round trip). For a merchant other
    /// than the default one, a record kept under the bare out_trade_no (a ledger from before
    /// refunds were merchant-scoped, see `store::shards`) is its refund when it names it.
    pub async fn get(&self, merchant: &str, out_trade_no: &str) -> Result<Option<Record>, LedgerError> {
        let keys = self.keys_for(merchant);
        let id = crate::refund::placement::refund_id(merchant, out_trade_no);
        let candidates =
            if id == out_trade_no { vec![keys.record(&id)] } else { vec![keys.record(&id), keys.record(out_trade_no)] };
        let mut pipe = redis::pipe();
        for key in &candidates {
            pipe.hgetall(key);
        }
        let hashes: Vec<HashMap<String, String>> = pipe.query_async(&mut self.con.clone()).await?;
        for (key, h) in candidates.iter().zip(hashes).filter(|(_, h)| !h.is_empty()) {
            let rec = Record::from_hash(key, &h)?;
            // A record under the bare out_trade_no is another merchant's unless it says otherwise.
            if rec.merchant == merchant {
                return Ok(self.with_whole_texts(self.shard_of(merchant), vec![rec]).await?.pop());
            }
        }
        Ok(None)
    }

    /// The record a claim named (by its shard and id), if it is still there.
    pub async fn get_ref(&self, target: &crate::RefundRef) -> Result<Option<Record>, LedgerError> {
        self.get_in(self.shard_of(&target.merchant), &target.id).await
    }

    /// The record of `id` in `shard`, if there is one.
    pub async fn get_in(&self, shard: usize, id: &str) -> Result<Option<Record>, LedgerError> {
        let key = self.shard_keys(shard).record(id);
        let h: HashMap<String, String> = self.con.clone().hgetall(&key).await?;
        if h.is_empty() {
            return Ok(None);
        }
        Ok(self.with_whole_texts(shard, vec![Record::from_hash(&key, &h)?]).await?.pop())
    }

    /// `recs` (of `shard`) with the whole texts their records keep only the start of (see
    /// `refund::timeline::restore_texts`): one more round trip, only when a text was cut.
    async fn with_whole_texts(&self, shard: usize, mut recs: Vec<Record>) -> Result<Vec<Record>, LedgerError> {
        let cut = |v: &Option<String>| v.as_deref().is_some_and(|t| t.ends_with(CUT));
        let which: Vec<usize> = (0..recs.len())
            .filter(|&i| cut(&recs[i].reason) || cut(&recs[i].resperr) || cut(&recs[i].last_error))
            .collect();
        if which.is_empty() {
            return Ok(recs);
        }
        let keys = self.shard_keys(shard);
        let mut pipe = redis::pipe();
        for &i in &which {
            pipe.lrange(keys.timeline(&recs[i].id), 0, -1);
        }
        let lists: Vec<Vec<String>> = pipe.query_async(&mut self.con.clone()).await?;
        for (i, raw) in which.into_iter().zip(lists) {
            let timeline: Vec<TimelineEntry> = raw.iter().filter_map(|e| TimelineEntry::parse(e)).collect();
            restore_texts(&mut recs[i], &timeline);
        }
        Ok(recs)
    }

    /// Records of `ids` (ids in `shard`), in order, in one pipelined round trip; ids without a
    /// record are left out.
    pub async fn get_many(&self, shard: usize, ids: &[String]) -> Result<Vec<Record>, LedgerError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys = self.shard_keys(shard);
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.hgetall(keys.record(id));
        }
        let hashes: Vec<HashMap<String, String>> = pipe.query_async(&mut self.con.clone()).await?;
        let mut out = Vec::with_capacity(ids.len());
        let mut missing = Vec::new();
        for (id, h) in ids.iter().zip(hashes) {
            if h.is_empty() {
                missing.push(id.clone());
            } else {
                out.push(Record::from_hash(&keys.record(id), &h)?);
            }
        }
        let mut out = self.with_whole_texts(shard, out).await?;
        // Final refunds archived early answer with their summaries (see `store::summary`).
        if !missing.is_empty() {
            let summaries = self.summaries_of(shard, &missing).await?;
            if !summaries.is_empty() {
                out.extend(summaries);
                let at: HashMap<&str, usize> = ids.iter().enumerate().map(|(i, id)| (id.as_str(), i)).collect();
                out.sort_by_key(|r| at.get(r.id.as_str()).copied().unwrap_or(usize::MAX));
            }
        }
        Ok(out)
    }

    /// Up to `limit` refunds in `state`, oldest first (by when they entered it), from `offset`.
    pub async fn list(&self, state: State, offset: usize, limit: usize) -> Result<Vec<Record>, LedgerError> {
        let end = (offset + limit.max(1)) as isize - 1;
        let mut all = Vec::new();
        for shard in 0..self.shard_count() {
            for index in Self::state_indexes(self.shard_keys(shard), state) {
                let ids: Vec<(String, f64)> = self.con.clone().zrange_withscores(index, 0, end).await?;
                all.extend(ids.into_iter().map(|(id, score)| (score as i64, id, shard)));
            }
        }
        let mut recs = self.records_of(merge_page(all, offset, limit)).await?;
        recs.retain(|r| r.state == state);
        Ok(recs)
    }

    /// How many refunds are in each state (every shard).
    pub async fn counts(&self) -> Result<Vec<(State, u64)>, LedgerError> {
        let mut totals = vec![0u64; State::ALL.len()];
        for shard in 0..self.shard_count() {
            let mut pipe = redis::pipe();
            // Each state's index, with its summaries index for a final state (see `store::summary`).
            for s in State::ALL {
                for index in Self::state_indexes(self.shard_keys(shard), s) {
                    pipe.zcard(index);
                }
            }
            let counts: Vec<u64> = pipe.query_async(&mut self.con.clone()).await?;
            let mut counts = counts.into_iter();
            for (t, s) in totals.iter_mut().zip(State::ALL) {
                *t += counts.by_ref().take(Self::state_indexes(self.shard_keys(shard), s).len()).sum::<u64>();
            }
        }
        Ok(State::ALL.into_iter().zip(totals).collect())
    }

    /// One page of the refunds in `state`, oldest first (by when they entered it), after `cursor`
    /// (from the previous page; `None` for the first). The returned cursor is `None` on the last
    /// page. Refunds moving between states while a client pages may be missed or seen twice in
    /// another state's pages, never twice in one state's. (Ids are unique across shards — a
    /// merchant lives in one — so one cursor orders every shard's index.)
    pub async fn page(
        &self,
        state: State,
        cursor: Option<&PageCursor>,
        limit: usize,
    ) -> Result<(Vec<Record>, Option<PageCursor>), LedgerError> {
        let limit = limit.clamp(1, 1_000);
        let (score, member) = cursor.map_or((String::new(), ""), |c| (c.score.to_string(), c.member.as_str()));
        let mut all = Vec::new();
        for shard in 0..self.shard_count() {
            for index in Self::state_indexes(self.shard_keys(shard), state) {
                let mut inv = PAGE.prepare_invoke();
                inv.key(index);
                PageArgs { score: score.clone(), member, limit }.push(&mut inv);
                let flat: Vec<String> = inv.invoke_async(&mut self.con.clone()).await?;
                all.extend(
                    flat.chunks_exact(2).map(|p| (p[1].parse::<f64>().unwrap_or(0.0) as i64, p[0].clone(), shard)),
                );
            }
        }
        let page = merge_page(all, 0, limit);
        let next = if page.len() == limit {
            page.last().map(|(s, m, _)| PageCursor { score: *s, member: m.clone() })
        } else {
            None
        };
        // (A leftover index entry whose refund was archived early reads as its summary: only
        // where it belongs.)
        let mut recs = self.records_of(page).await?;
        recs.retain(|r| r.state == state);
        Ok((recs, next))
    }

    /// The indexes of refunds in `state`: final ones archived early have one of their own per
    /// state (by when they were created: close to when they became final).
    pub(crate) fn state_indexes(keys: &Keys, state: State) -> Vec<String> {
        let mut v = vec![keys.state(state)];
        if crate::store::keys::SUMMARISED.contains(&state) {
            v.push(keys.summaries_in(state));
        }
        v
    }

    /// Refunds created in `[from, to]` (ms), oldest first, at most `limit` after skipping `offset`.
    pub async fn created_between(
        &self,
        from: i64,
        to: i64,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<Record>, LedgerError> {
        let mut all = Vec::new();
        for shard in 0..self.shard_count() {
            // Fresh refunds are not in the created index yet (read first: one settled meanwhile
            // is in the created index by then).
            let n = offset + limit.max(1);
            all.extend(self.fresh_created_between(shard, from, to, n).await?.into_iter().map(|(t, id)| (t, id, shard)));
            // Final refunds archived early are indexed by creation in their summaries indexes.
            let keys = self.shard_keys(shard);
            for index in std::iter::once(keys.created()).chain(keys.every_summaries()) {
                let ids: Vec<(String, f64)> = self
                    .con
                    .clone()
                    .zrangebyscore_limit_withscores(index, from, to, 0, (offset + limit.max(1)) as isize)
                    .await?;
                all.extend(ids.into_iter().map(|(id, score)| (score as i64, id, shard)));
            }
        }
        self.records_of(merge_page(all, offset, limit)).await
    }

    /// The records of a merged page, in its order.
    async fn records_of(&self, page: Vec<(i64, String, usize)>) -> Result<Vec<Record>, LedgerError> {
        Ok(self.records_in_order(&page).await?.into_iter().flatten().collect())
    }

    /// The record (or summary) of each (score, id, shard) entry, in order, `None` where neither
    /// is left (one pipelined round trip a shard).
    pub(crate) async fn records_in_order(
        &self,
        entries: &[(i64, String, usize)],
    ) -> Result<Vec<Option<Record>>, LedgerError> {
        let mut by_shard: Vec<Vec<String>> = vec![Vec::new(); self.shard_count()];
        for (_, id, shard) in entries {
            by_shard[*shard].push(id.clone());
        }
        let mut found: HashMap<(usize, String), Record> = HashMap::new();
        for (shard, ids) in by_shard.iter().enumerate().filter(|(_, ids)| !ids.is_empty()) {
            for r in self.get_many(shard, ids).await? {
                found.insert((shard, r.id.clone()), r);
            }
        }
        Ok(entries.iter().map(|(_, id, shard)| found.remove(&(*shard, id.clone()))).collect())
    }

    /// Every refund of payment `syssn`, oldest first (a payment is one merchant's, but the
    /// caller may not know which: every shard is asked).
    pub async fn by_payment(&self, syssn: &str) -> Result<Vec<Record>, LedgerError> {
        let mut out = Vec::new();
        for shard in 0..self.shard_count() {
            let h: HashMap<String, String> = self.con.clone().hgetall(self.shard_keys(shard).payment(syssn)).await?;
            let mut ids: Vec<(i64, String)> = h
                .into_iter()
                .filter_map(|(k, v)| k.strip_prefix("r:").map(|id| (v.parse().unwrap_or(0), id.to_owned())))
                .collect();
            ids.sort();
            let ids: Vec<String> = ids.into_iter().map(|(_, id)| id).collect();
            out.extend(self.get_many(shard, &ids).await?);
        }
        out.sort_by_key(|r| r.created_at);
        Ok(out)
    }

    // Ledger::pause and Ledger::resume: see crate::store::pause (audited).

    /// Paused merchants and why (every shard).
    pub async fn paused(&self) -> Result<HashMap<String, String>, LedgerError> {
        let mut out = HashMap::new();
        for shard in 0..self.shard_count() {
            let h: HashMap<String, String> = self.con.clone().hgetall(self.shard_keys(shard).paused()).await?;
            out.extend(h);
        }
        Ok(out)
    }

    /// Outcome-stream entries after the id `after` (`"0"`: from the beginning), at most `count`:
    /// every shard's stream, merged in id order (ids are their servers' clocks: a live reader that
    /// must see every entry follows each shard's stream).
    pub async fn events(&self, after: &str, count: usize) -> Result<Vec<Event>, LedgerError> {
        let entries = self.merged_after(Keys::events, after, count).await?;
        Ok(entries.into_iter().map(|(id, f)| Event::from_fields(id, f)).collect())
    }

    /// The newest outcome-stream id of any shard, if there is any entry.
    pub async fn last_event_id(&self) -> Result<Option<String>, LedgerError> {
        let mut newest: Option<String> = None;
        for shard in 0..self.shard_count() {
            let last: Vec<(String, HashMap<String, String>)> = redis::cmd("XREVRANGE")
                .arg(self.shard_keys(shard).events())
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(1)
                .query_async(&mut self.con.clone())
                .await?;
            if let Some((id, _)) = last.into_iter().next()
                && newest.as_ref().is_none_or(|n| stream_id(&id) > stream_id(n))
            {
                newest = Some(id);
            }
        }
        Ok(newest)
    }

    /// Entries after the id `after` of the stream `key` names in every shard, merged in id order,
    /// at most `count` (more when entries of several shards share the last id, so a next read
    /// after that id misses none). Stream ids are the writing server's clock: a reader that
    /// follows the merged stream live may miss an entry a shard on a server whose clock lags
    /// writes later with an older id; consumers that must see every entry read each shard's
    /// stream with a consumer group (the per-shard names are in docs/outcomes.md).
    pub(crate) async fn merged_after(
        &self,
        key: fn(&Keys) -> String,
        after: &str,
        count: usize,
    ) -> Result<Vec<(String, HashMap<String, String>)>, LedgerError> {
        let mut all = Vec::new();
        for shard in 0..self.shard_count() {
            all.extend(self.stream_after(&key(self.shard_keys(shard)), after, count).await?);
        }
        if self.shard_count() == 1 {
            return Ok(all);
        }
        all.sort_by_key(|(id, _)| stream_id(id));
        if all.len() > count
            && let Some(last) = all.get(count.max(1) - 1).map(|(id, _)| stream_id(id))
        {
            let keep = all.iter().take_while(|(id, _)| stream_id(id) <= last).count();
            all.truncate(keep);
        }
        Ok(all)
    }

    /// Entries of stream `key` after the id `after` (`"0"` or empty: from the beginning).
    pub(crate) async fn stream_after(
        &self,
        key: &str,
        after: &str,
        count: usize,
    ) -> Result<Vec<(String, HashMap<String, String>)>, LedgerError> {
        let start = if after == "0" || after.is_empty() { "-".to_owned() } else { format!("({after}") };
        Ok(redis::cmd("XRANGE")
            .arg(key)
            .arg(start)
            .arg("+")
            .arg("COUNT")
            .arg(count)
            .query_async(&mut self.con.clone())
            .await?)
    }
}

/// A stream id as a number pair (`<ms>-<seq>`) for ordering; an unreadable one sorts first.
fn stream_id(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}

/// Entries `(score, id, shard)` of several shards' indexes, ordered as one index would order them
/// (score, then id), `limit` of them from `offset`.
fn merge_page(mut all: Vec<(i64, String, usize)>, offset: usize, limit: usize) -> Vec<(i64, String, usize)> {
    all.sort();
    // (A fresh refund settled while it was read is in two of the indexes, at one time.)
    all.dedup();
    all.into_iter().skip(offset).take(limit.max(1)).collect()
}
