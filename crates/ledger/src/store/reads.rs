//! Reading the ledger: records, state listings and pages, payments, the outcome stream.

use std::collections::HashMap;

use redis::AsyncCommands;

use crate::error::LedgerError;
use crate::refund::event::Event;
use crate::refund::record::Record;
use crate::refund::state::State;
use crate::store::Ledger;
use crate::store::args::script_args;
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
    /// The record of `out_trade_no`, if there is one.
    pub async fn get(&self, out_trade_no: &str) -> Result<Option<Record>, LedgerError> {
        let key = self.keys.record(out_trade_no);
        let h: HashMap<String, String> = self.con.clone().hgetall(&key).await?;
        if h.is_empty() {
            return Ok(None);
        }
        Ok(Some(Record::from_hash(&key, &h)?))
    }

    /// Records of `ids`, in order, in one pipelined round trip; ids without a record are left out.
    pub async fn get_many(&self, ids: &[String]) -> Result<Vec<Record>, LedgerError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.hgetall(self.keys.record(id));
        }
        let hashes: Vec<HashMap<String, String>> = pipe.query_async(&mut self.con.clone()).await?;
        let mut out = Vec::with_capacity(ids.len());
        for (id, h) in ids.iter().zip(hashes) {
            if !h.is_empty() {
                out.push(Record::from_hash(&self.keys.record(id), &h)?);
            }
        }
        Ok(out)
    }

    /// Up to `limit` out_trade_nos in `state`, oldest first, starting at `offset`.
    pub async fn list(&self, state: State, offset: isize, limit: isize) -> Result<Vec<String>, LedgerError> {
        let ids: Vec<String> =
            self.con.clone().zrange(self.keys.state(state), offset, offset + limit.max(1) - 1).await?;
        Ok(ids)
    }

    /// How many refunds are in each state.
    pub async fn counts(&self) -> Result<Vec<(State, u64)>, LedgerError> {
        let mut pipe = redis::pipe();
        for s in State::ALL {
            pipe.zcard(self.keys.state(s));
        }
        let counts: Vec<u64> = pipe.query_async(&mut self.con.clone()).await?;
        Ok(State::ALL.into_iter().zip(counts).collect())
    }

    /// One page of the refunds in `state`, oldest first (by when they entered it), after `cursor`
    /// (from the previous page; `None` for the first). The returned cursor is `None` on the last
    /// page. Refunds moving between states while a client pages may be missed or seen twice in
    /// another state's pages, never twice in one state's.
    pub async fn page(
        &self,
        state: State,
        cursor: Option<&PageCursor>,
        limit: usize,
    ) -> Result<(Vec<Record>, Option<PageCursor>), LedgerError> {
        let limit = limit.clamp(1, 1_000);
        let mut inv = PAGE.prepare_invoke();
        inv.key(self.keys.state(state));
        let (score, member) = cursor.map_or((String::new(), ""), |c| (c.score.to_string(), c.member.as_str()));
        PageArgs { score, member, limit }.push(&mut inv);
        let flat: Vec<String> = inv.invoke_async(&mut self.con.clone()).await?;
        let pairs: Vec<(String, i64)> =
            flat.chunks_exact(2).map(|p| (p[0].clone(), p[1].parse::<f64>().unwrap_or(0.0) as i64)).collect();
        let next = if pairs.len() == limit {
            pairs.last().map(|(m, s)| PageCursor { score: *s, member: m.clone() })
        } else {
            None
        };
        let ids: Vec<String> = pairs.into_iter().map(|(m, _)| m).collect();
        Ok((self.get_many(&ids).await?, next))
    }

    /// The out_trade_nos of refunds created in `[from, to]` (ms), oldest first, at most `limit`
    /// after skipping `offset`.
    pub async fn created_between(
        &self,
        from: i64,
        to: i64,
        offset: isize,
        limit: isize,
    ) -> Result<Vec<String>, LedgerError> {
        Ok(self.con.clone().zrangebyscore_limit(self.keys.created(), from, to, offset, limit).await?)
    }

    /// Every refund of payment `syssn`, oldest first.
    pub async fn by_payment(&self, syssn: &str) -> Result<Vec<Record>, LedgerError> {
        let h: HashMap<String, String> = self.con.clone().hgetall(self.keys.payment(syssn)).await?;
        let mut ids: Vec<(i64, String)> = h
            .into_iter()
            .filter_map(|(k, v)| k.strip_prefix("r:").map(|otn| (v.parse().unwrap_or(0), otn.to_owned())))
            .collect();
        ids.sort();
        let ids: Vec<String> = ids.into_iter().map(|(_, otn)| otn).collect();
        self.get_many(&ids).await
    }

    // Ledger::pause and Ledger::resume: see crate::store::pause (audited).

    /// Paused merchants and why.
    pub async fn paused(&self) -> Result<HashMap<String, String>, LedgerError> {
        Ok(self.con.clone().hgetall(self.keys.paused()).await?)
    }

    /// Outcome-stream entries after the id `after` (`"0"`: from the beginning), at most `count`.
    pub async fn events(&self, after: &str, count: usize) -> Result<Vec<Event>, LedgerError> {
        let entries = self.stream_after(&self.keys.events(), after, count).await?;
        Ok(entries.into_iter().map(|(id, f)| Event::from_fields(id, f)).collect())
    }

    /// The newest outcome-stream id, if there is any entry.
    pub async fn last_event_id(&self) -> Result<Option<String>, LedgerError> {
        let last: Vec<(String, HashMap<String, String>)> = redis::cmd("XREVRANGE")
            .arg(self.keys.events())
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut self.con.clone())
            .await?;
        Ok(last.into_iter().next().map(|(id, _)| id))
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
