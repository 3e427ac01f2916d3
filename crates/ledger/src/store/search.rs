//! Searching refunds by what operators ask about: state, merchant, payment, respcd, amount and
//! time ranges, oldest or newest first, in cursor pages. A search walks one index — the state's
//! (by when refunds entered it) when a state is given, else the created index (by creation; fresh
//! refunds, see `store::fresh`, by the queued index) — over the shards it concerns (one, for a
//! merchant), merging them in order and filtering the records on the way. It reads at most
//! [`SCAN_CAP`] index entries per call: a page may come back short, with a cursor, when few
//! refunds match; the caller asks on from the cursor.

use crate::error::LedgerError;
use crate::refund::record::Record;
use crate::refund::state::State;
use crate::store::Ledger;
use crate::store::args::script_args;
use crate::store::reads::PageCursor;
use crate::store::script::SEARCH;

/// Index entries one search call reads at most.
pub const SCAN_CAP: usize = 5_000;

/// Index entries read from each index per step.
const STEP: usize = 200;

/// Scores no refund's time reaches (ms; exact in a double).
const NO_MIN: i64 = -(1 << 53);
const NO_MAX: i64 = 1 << 53;

script_args! {
    /// What `search.lua` takes: the cursor (`score` '' = from the start), the direction, the
    /// score bounds and the number of entries.
    pub struct SearchArgs<'a> { score: String, member: &'a str, desc: bool, min: i64, max: i64, limit: usize }
}

/// What to look for; every condition given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Search {
    pub state: Option<State>,
    pub merchant: Option<String>,
    /// The original payment's QFPay syssn.
    pub syssn: Option<String>,
    pub respcd: Option<String>,
    /// Created within [from, to] (ms, inclusive).
    pub created_from: Option<i64>,
    pub created_to: Option<i64>,
    /// Last changed within [from, to] (ms, inclusive).
    pub updated_from: Option<i64>,
    pub updated_to: Option<i64>,
    /// The refund's amount within [min, max] (minor units, inclusive).
    pub min_txamt: Option<u64>,
    pub max_txamt: Option<u64>,
    /// Newest first (by the walked index's time); oldest first otherwise.
    pub newest_first: bool,
}

impl Search {
    /// Whether `r` meets every condition.
    pub fn matches(&self, r: &Record) -> bool {
        let within =
            |v: i64, from: Option<i64>, to: Option<i64>| from.is_none_or(|f| v >= f) && to.is_none_or(|t| v <= t);
        self.state.is_none_or(|s| r.state == s)
            && self.merchant.as_deref().is_none_or(|m| r.merchant == m)
            && self.syssn.as_deref().is_none_or(|s| r.syssn == s)
            && self.respcd.as_deref().is_none_or(|c| r.respcd.as_deref() == Some(c))
            && within(r.created_at, self.created_from, self.created_to)
            && within(r.updated_at, self.updated_from, self.updated_to)
            && self.min_txamt.is_none_or(|m| r.txamt >= m)
            && self.max_txamt.is_none_or(|m| r.txamt <= m)
    }
}

/// A page of a search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub items: Vec<Record>,
    /// Where to ask on; `None` once every index entry was looked at.
    pub next: Option<PageCursor>,
    /// Index entries looked at.
    pub scanned: usize,
}

impl Ledger {
    /// Up to `limit` (1–1000) refunds meeting `q`, after `cursor` (a previous page's `next`).
    pub async fn search(&self, q: &Search, cursor: Option<&PageCursor>, limit: usize) -> Result<Found, LedgerError> {
        let limit = limit.clamp(1, 1_000);
        // A payment lists its refunds, but not the fresh ones yet (see `store::fresh`): while any
        // waits, the payment's refunds are searched for like any others.
        if q.state.is_none()
            && let Some(syssn) = &q.syssn
            && self.ready_total().await? == 0
        {
            return self.search_payment(q, syssn, cursor, limit).await;
        }
        let shards: Vec<usize> = match &q.merchant {
            Some(m) => vec![self.shard_of(m)],
            None => (0..self.shard_count()).collect(),
        };
        // The indexes walked, and the score bounds they allow (only the created index is scored
        // by creation throughout: the summaries' index too).
        let mut sources: Vec<(usize, String)> = Vec::new();
        let bounded = q.state.is_none();
        for &shard in &shards {
            let keys = self.shard_keys(shard);
            match q.state {
                Some(s) => sources.extend(Self::state_indexes(keys, s).into_iter().map(|i| (shard, i))),
                // Fresh refunds (see `store::fresh`) are in the queued index by creation, until
                // they are settled into the created index.
                None => sources.extend(
                    [keys.state(State::Queued), keys.created()]
                        .into_iter()
                        .chain(keys.every_summaries())
                        .map(|i| (shard, i)),
                ),
            }
        }
        let (min, max) =
            if bounded { (q.created_from.unwrap_or(NO_MIN), q.created_to.unwrap_or(NO_MAX)) } else { (NO_MIN, NO_MAX) };
        let mut at = cursor.cloned();
        let mut out = Found { items: Vec::new(), next: None, scanned: 0 };
        loop {
            let step = STEP.min(SCAN_CAP.saturating_sub(out.scanned)).max(1);
            let mut entries: Vec<(i64, String, usize)> = Vec::new();
            // The furthest point every source that may hold more has reached: entries past it
            // wait for the next step (another source may hold entries before them).
            let mut boundary: Option<(i64, String)> = None;
            // Entries of the queued index, and of the others: one of the queued index alone
            // counts only at its refund's creation time (a fresh refund's, or one settled as this
            // step read); one queued again by an operator is there by when it was, and in the
            // created index by its creation.
            let mut queued_hits: std::collections::HashSet<(i64, String, usize)> = Default::default();
            let mut other_hits: std::collections::HashSet<(i64, String, usize)> = Default::default();
            for (shard, index) in &sources {
                let mut inv = SEARCH.prepare_invoke();
                inv.key(index);
                let (score, member) = at.as_ref().map_or((String::new(), ""), |c| (c.score.to_string(), &c.member));
                SearchArgs { score, member, desc: q.newest_first, min, max, limit: step }.push(&mut inv);
                let flat: Vec<String> = inv.invoke_async(&mut self.con.clone()).await?;
                let got: Vec<(i64, String)> =
                    flat.chunks_exact(2).map(|p| (p[1].parse::<f64>().unwrap_or(0.0) as i64, p[0].clone())).collect();
                if got.len() == step
                    && let Some(last) = got.last()
                {
                    let earlier = boundary.as_ref().is_none_or(|b| if q.newest_first { last > b } else { last < b });
                    if earlier {
                        boundary = Some(last.clone());
                    }
                }
                if bounded {
                    let hits = if *index == self.shard_keys(*shard).state(State::Queued) {
                        &mut queued_hits
                    } else {
                        &mut other_hits
                    };
                    hits.extend(got.iter().map(|(s, m)| (*s, m.clone(), *shard)));
                }
                entries.extend(got.into_iter().map(|(s, m)| (s, m, *shard)));
            }
            entries.sort();
            entries.dedup();
            // A refund queued again is in this step by its creation too: its queued entry goes.
            let elsewhere: std::collections::HashSet<(&String, usize)> =
                other_hits.iter().map(|(_, m, shard)| (m, *shard)).collect();
            let again: std::collections::HashSet<(i64, String, usize)> = queued_hits
                .iter()
                .filter(|e| !other_hits.contains(*e) && elsewhere.contains(&(&e.1, e.2)))
                .cloned()
                .collect();
            entries.retain(|e| !again.contains(e));
            if q.newest_first {
                entries.reverse();
            }
            if let Some(b) = &boundary {
                entries.retain(|(s, m, _)| {
                    let e = (*s, m.clone());
                    if q.newest_first { e >= *b } else { e <= *b }
                });
            }
            let records = self.records_in_order(&entries).await?;
            for ((score, member, shard), rec) in entries.iter().zip(records) {
                out.scanned += 1;
                at = Some(PageCursor { score: *score, member: member.clone() });
                let entry = (*score, member.clone(), *shard);
                let queued_only = queued_hits.contains(&entry) && !other_hits.contains(&entry);
                let listed = |r: &Record| !queued_only || r.fresh || r.created_at == *score;
                if let Some(r) = rec.filter(|r| q.matches(r) && listed(r)) {
                    out.items.push(r);
                    if out.items.len() == limit {
                        out.next = at;
                        return Ok(out);
                    }
                }
            }
            match boundary {
                None => return Ok(out),
                Some((score, member)) => at = Some(PageCursor { score, member }),
            }
            if out.scanned >= SCAN_CAP {
                out.next = at;
                return Ok(out);
            }
        }
    }

    /// A search of one payment's refunds (those its payment lists: not those archived), by
    /// creation.
    async fn search_payment(
        &self,
        q: &Search,
        syssn: &str,
        cursor: Option<&PageCursor>,
        limit: usize,
    ) -> Result<Found, LedgerError> {
        let all = self.by_payment(syssn).await?;
        let scanned = all.len();
        let key = |r: &Record| (r.created_at, r.id.clone());
        let mut items: Vec<Record> = all.into_iter().filter(|r| q.matches(r)).collect();
        items.sort_by_key(key);
        if q.newest_first {
            items.reverse();
        }
        if let Some(c) = cursor {
            let c = (c.score, c.member.clone());
            items.retain(|r| if q.newest_first { key(r) < c } else { key(r) > c });
        }
        let more = items.len() > limit;
        items.truncate(limit);
        let next =
            if more { items.last().map(|r| PageCursor { score: r.created_at, member: r.id.clone() }) } else { None };
        Ok(Found { items, next, scanned })
    }

    /// What payment `syssn` is known to have been paid (if known) and to have had refunded
    /// (every refund of it that succeeded or may have, archived ones included): from its hash
    /// while any refund of it is in Redis, else from its tombstone. `None`: never refunded here.
    pub async fn payment_totals(&self, syssn: &str) -> Result<Option<(Option<u64>, u64)>, LedgerError> {
        // Every shard's payment hash in one round trip (the caller may not know the merchant).
        let mut pipe = redis::pipe();
        for shard in 0..self.shard_count() {
            pipe.cmd("HMGET").arg(self.shard_keys(shard).payment(syssn)).arg("paid").arg("committed");
        }
        let live: Vec<(Option<u64>, Option<u64>)> = pipe.query_async(&mut self.con.clone()).await?;
        if let Some((paid, committed)) = live.into_iter().find(|(p, c)| p.is_some() || c.is_some()) {
            return Ok(Some((paid, committed.unwrap_or(0))));
        }
        for shard in 0..self.shard_count() {
            if let Some(t) = self.payment_tombstone_in(shard, syssn).await? {
                return Ok(Some(t));
            }
        }
        Ok(None)
    }
}
