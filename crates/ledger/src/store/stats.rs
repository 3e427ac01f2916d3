//! The ledger at a glance, for operators and metrics scrapes.

use std::collections::HashMap;

use crate::error::LedgerError;
use crate::refund::state::State;
use crate::store::Ledger;

/// The ledger at a glance.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    pub by_state: Vec<(State, u64)>,
    /// How long the oldest non-final refund has been in its current state (ms).
    pub oldest_open_age_ms: Option<i64>,
    /// Refunds in the due-index (due now or later).
    pub due_total: u64,
    /// Refunds due now: the backlog workers have not picked up yet.
    pub due_now: u64,
    /// Paused merchants and why.
    pub paused: HashMap<String, String>,
    /// Webhook deliveries given up (see `qfrefund webhooks`).
    pub webhooks_failed: u64,
    /// Webhook deliveries waiting for a retry.
    pub webhooks_retrying: u64,
    /// Workers whose heartbeat holds now (see `qfrefund workers`).
    pub live_workers: u64,
}

impl Stats {}

impl Ledger {
    /// What an operator (or a metrics scrape) wants to know at a glance: every shard, summed.
    pub async fn stats(&self) -> Result<Stats, LedgerError> {
        let mut total = self.shard_stats(0).await?;
        for shard in 1..self.shard_count() {
            let s = self.shard_stats(shard).await?;
            for ((_, t), (_, n)) in total.by_state.iter_mut().zip(s.by_state) {
                *t += n;
            }
            total.oldest_open_age_ms = match (total.oldest_open_age_ms, s.oldest_open_age_ms) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            total.due_total += s.due_total;
            total.due_now += s.due_now;
            total.paused.extend(s.paused);
            total.webhooks_failed += s.webhooks_failed;
            total.webhooks_retrying += s.webhooks_retrying;
        }
        total.live_workers = self.live_workers().await?.len() as u64;
        Ok(total)
    }

    /// [`Ledger::stats`] of one shard (one pipelined round trip).
    async fn shard_stats(&self, shard: usize) -> Result<Stats, LedgerError> {
        let now = self.now_ms();
        let keys = self.shard_keys(shard);
        let mut pipe = redis::pipe();
        for s in State::ALL {
            pipe.zcard(keys.state(s));
        }
        for index in keys.every_summaries() {
            pipe.zcard(index);
        }
        for s in State::ALL.into_iter().filter(|s| !s.is_final()) {
            pipe.cmd("ZRANGE").arg(keys.state(s)).arg(0).arg(0).arg("WITHSCORES");
        }
        pipe.zcard(keys.due()).zcount(keys.due(), "-inf", now).llen(keys.ready()).hgetall(keys.paused());
        pipe.zcard(keys.webhook_failed()).zcard(keys.webhook_retry());
        let mut values: Vec<redis::Value> = pipe.query_async(&mut self.con.clone()).await?;
        let bad = |what: &str| LedgerError::Script(format!("stats: unexpected reply for {what}"));
        let mut take = || if values.is_empty() { None } else { Some(values.remove(0)) };
        let mut by_state = Vec::new();
        for s in State::ALL {
            let n: u64 = redis::from_redis_value(take().ok_or_else(|| bad("counts"))?).map_err(|_| bad("counts"))?;
            by_state.push((s, n));
        }
        // Refunds archived early count in their state (see `store::summary`).
        for state in crate::store::keys::SUMMARISED {
            let summarised: u64 =
                redis::from_redis_value(take().ok_or_else(|| bad("counts"))?).map_err(|_| bad("counts"))?;
            if let Some((_, n)) = by_state.iter_mut().find(|(s, _)| *s == state) {
                *n += summarised;
            }
        }
        let mut oldest_open_at: Option<i64> = None;
        for _ in State::ALL.into_iter().filter(|s| !s.is_final()) {
            let first: Vec<(String, f64)> =
                redis::from_redis_value(take().ok_or_else(|| bad("oldest"))?).map_err(|_| bad("oldest"))?;
            if let Some((_, at)) = first.first() {
                let at = *at as i64;
                oldest_open_at = Some(oldest_open_at.map_or(at, |o| o.min(at)));
            }
        }
        let due_total: u64 = redis::from_redis_value(take().ok_or_else(|| bad("due"))?).map_err(|_| bad("due"))?;
        let due_now: u64 = redis::from_redis_value(take().ok_or_else(|| bad("due"))?).map_err(|_| bad("due"))?;
        // Fresh refunds on the ready list are due now (see `store::fresh`).
        let ready: u64 = redis::from_redis_value(take().ok_or_else(|| bad("ready"))?).map_err(|_| bad("ready"))?;
        let (due_total, due_now) = (due_total + ready, due_now + ready);
        let paused: HashMap<String, String> =
            redis::from_redis_value(take().ok_or_else(|| bad("paused"))?).map_err(|_| bad("paused"))?;
        let webhooks_failed: u64 =
            redis::from_redis_value(take().ok_or_else(|| bad("webhooks"))?).map_err(|_| bad("webhooks"))?;
        let webhooks_retrying: u64 =
            redis::from_redis_value(take().ok_or_else(|| bad("webhooks"))?).map_err(|_| bad("webhooks"))?;
        Ok(Stats {
            by_state,
            oldest_open_age_ms: oldest_open_at.map(|at| (now - at).max(0)),
            due_total,
            due_now,
            paused,
            webhooks_failed,
            webhooks_retrying,
            live_workers: 0,
        })
    }
}

impl Ledger {
    /// How many refunds entered `state` within [from, to] (ms) and are still in Redis (every
    /// shard; final ones archived early are counted by when they were created).
    pub async fn entered_between(&self, state: State, from: i64, to: i64) -> Result<u64, LedgerError> {
        let mut pipe = redis::pipe();
        for shard in 0..self.shard_count() {
            for index in Self::state_indexes(self.shard_keys(shard), state) {
                pipe.zcount(index, from, to);
            }
        }
        let counts: Vec<u64> = pipe.query_async(&mut self.con.clone()).await?;
        Ok(counts.into_iter().sum())
    }
}
