//! The webhook schedules: deliveries to retry (a zset of event ids, scored by when) and deliveries
//! given up (a zset, scored by when), with one hash per delivery holding what sending it again
//! takes (its body, merchant, attempts, last error). They live in Redis so that retries survive
//! restarts and the outcome stream's trimming. The deliverer decides when to try and when to give
//! up; these operations keep the books.

use std::collections::HashMap;

use redis::AsyncCommands;
use serde::Serialize;

use std::sync::LazyLock;

use redis::Script;

use crate::error::LedgerError;
use crate::store::Ledger;
use crate::store::args::script_args;

script_args! {
    /// What `take_webhook.lua` takes.
    pub struct TakeWebhookArgs<'a> { event_id: &'a str, now: i64, hold_until: i64 }
}

static TAKE: LazyLock<Script> =
    LazyLock::new(|| Script::new(&format!("{}\n{}", TakeWebhookArgs::lua_prelude(), include_str!("take_webhook.lua"))));

/// A failed delivery attempt, as the schedule keeps it.
#[derive(Debug, Clone, Copy)]
pub struct WebhookAttempt<'a> {
    /// The id receivers de-duplicate on; names the delivery on the schedules.
    pub event_id: &'a str,
    pub out_trade_no: &'a str,
    pub merchant: &'a str,
    /// The request body, sent again as it is.
    pub body: &'a [u8],
    /// Attempts made so far, this one included.
    pub attempts: u32,
    /// What went wrong with this attempt (shown to operators: nothing secret).
    pub error: &'a str,
}

/// A delivery taken from the retry schedule for one more attempt ([`Ledger::take_webhook`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueWebhook {
    pub event_id: String,
    pub out_trade_no: String,
    /// Whose webhook it goes to: only a worker holding that merchant's hook can send it.
    pub merchant: String,
    /// The request body, as first sent.
    pub body: Vec<u8>,
    /// Attempts made so far.
    pub attempts: u32,
}

/// A delivery given up, as `qfrefund list --webhook-failed` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailedWebhook {
    /// What `qfrefund redeliver` takes.
    pub event_id: String,
    pub out_trade_no: String,
    pub merchant: String,
    /// Attempts made before it was given up.
    pub attempts: u32,
    /// What went wrong with the last of them.
    pub last_error: String,
    /// When it was given up (ms since the epoch, Redis' clock).
    pub failed_at: i64,
}

impl Ledger {
    /// Records a failed attempt and puts the delivery on the retry schedule, due at `at_ms`. A
    /// delivery given up earlier (its outcome replayed) is taken out of the failed set: it is
    /// being tried again.
    pub async fn schedule_webhook_retry(&self, a: &WebhookAttempt<'_>, at_ms: i64) -> Result<(), LedgerError> {
        let keys = self.keys_for(a.merchant);
        let mut pipe = self.record_attempt(a);
        pipe.zadd(keys.webhook_retry(), a.event_id, at_ms).zrem(keys.webhook_failed(), a.event_id);
        Ok(pipe.query_async::<()>(&mut self.con.clone()).await?)
    }

    /// Records the last failed attempt and moves the delivery from the retry schedule to the
    /// failed set, where [`Ledger::failed_webhooks`] lists it until it is redelivered.
    pub async fn give_up_webhook(&self, a: &WebhookAttempt<'_>) -> Result<(), LedgerError> {
        let keys = self.keys_for(a.merchant);
        let mut pipe = self.record_attempt(a);
        pipe.zrem(keys.webhook_retry(), a.event_id).zadd(keys.webhook_failed(), a.event_id, self.now_ms());
        Ok(pipe.query_async::<()>(&mut self.con.clone()).await?)
    }

    /// The start of a pipeline that writes a failed attempt into the delivery's hash.
    fn record_attempt(&self, a: &WebhookAttempt<'_>) -> redis::Pipeline {
        let key = self.keys_for(a.merchant).webhook(a.event_id);
        let mut pipe = redis::pipe();
        pipe.hset_multiple(
            &key,
            &[
                ("out_trade_no", a.out_trade_no),
                ("merchant", a.merchant),
                ("error", a.error),
                ("attempts", &a.attempts.to_string()),
            ],
        )
        .hset(&key, "body", a.body);
        pipe
    }

    /// Event ids of the deliveries due now on the retry schedule, the longest due first, at most
    /// `limit`. Another worker may take any of them first: see [`Ledger::take_webhook`].
    pub async fn due_webhooks(&self, shard: usize, limit: usize) -> Result<Vec<String>, LedgerError> {
        let keys = self.shard_keys(shard);
        let now = self.now_ms();
        Ok(self.con.clone().zrangebyscore_limit(keys.webhook_retry(), "-inf", now, 0, limit as isize).await?)
    }

    /// Takes a delivery found due for one attempt: it stays on the schedule, but not due before
    /// `hold_until_ms`, so that another worker does not send it meanwhile (and a worker that dies
    /// mid-attempt only delays it). Only a delivery still due is taken (`take_webhook.lua`): two
    /// workers that both listed it never both send it.
    ///
    /// `None`: another worker holds it already, or there is nothing left to send (the delivery's
    /// hash is gone or incomplete; it is dropped from the schedule).
    pub async fn take_webhook(
        &self,
        shard: usize,
        event_id: &str,
        hold_until_ms: i64,
    ) -> Result<Option<DueWebhook>, LedgerError> {
        let keys = self.shard_keys(shard);
        let mut con = self.con.clone();
        let mut inv = TAKE.prepare_invoke();
        inv.key(keys.webhook_retry());
        TakeWebhookArgs { event_id, now: self.now_ms(), hold_until: hold_until_ms }.push(&mut inv);
        let taken: u64 = inv.invoke_async(&mut con).await?;
        if taken == 0 {
            return Ok(None);
        }
        let mut h: HashMap<String, String> = con.hgetall(keys.webhook(event_id)).await?;
        let (Some(merchant), Some(body)) = (h.remove("merchant"), h.remove("body")) else {
            let _: () = con.zrem(keys.webhook_retry(), event_id).await?;
            return Ok(None);
        };
        Ok(Some(DueWebhook {
            event_id: event_id.to_owned(),
            out_trade_no: h.remove("out_trade_no").unwrap_or_default(),
            merchant,
            body: body.into_bytes(),
            attempts: h.get("attempts").and_then(|v| v.parse().ok()).unwrap_or(0),
        }))
    }

    /// Moves a delivery on the retry schedule to `at_ms` without counting an attempt (a worker
    /// without the merchant's webhook leaves it for one that has it).
    pub async fn postpone_webhook(&self, shard: usize, event_id: &str, at_ms: i64) -> Result<(), LedgerError> {
        let keys = self.shard_keys(shard);
        Ok(self.con.clone().zadd(keys.webhook_retry(), event_id, at_ms).await?)
    }

    /// A delivery from the retry schedule went through: off the schedule, its hash deleted.
    pub async fn webhook_delivered(&self, shard: usize, event_id: &str) -> Result<(), LedgerError> {
        let keys = self.shard_keys(shard);
        Ok(redis::pipe()
            .zrem(keys.webhook_retry(), event_id)
            .del(keys.webhook(event_id))
            .query_async::<()>(&mut self.con.clone())
            .await?)
    }

    /// Deliveries given up, the oldest first, at most `limit` (every shard).
    pub async fn failed_webhooks(&self, limit: usize) -> Result<Vec<FailedWebhook>, LedgerError> {
        let mut out = Vec::new();
        for shard in 0..self.shard_count() {
            out.extend(self.failed_in(shard, limit).await?);
        }
        out.sort_by_key(|f| f.failed_at);
        out.truncate(limit);
        Ok(out)
    }

    async fn failed_in(&self, shard: usize, limit: usize) -> Result<Vec<FailedWebhook>, LedgerError> {
        let keys = self.shard_keys(shard);
        let mut con = self.con.clone();
        let ids: Vec<(String, f64)> =
            con.zrange_withscores(keys.webhook_failed(), 0, limit.saturating_sub(1) as isize).await?;
        let mut out = Vec::with_capacity(ids.len());
        for (id, at) in ids {
            let mut h: HashMap<String, String> = con.hgetall(keys.webhook(&id)).await?;
            out.push(FailedWebhook {
                out_trade_no: h.remove("out_trade_no").unwrap_or_default(),
                merchant: h.remove("merchant").unwrap_or_default(),
                attempts: h.get("attempts").and_then(|v| v.parse().ok()).unwrap_or(0),
                last_error: h.remove("error").unwrap_or_default(),
                failed_at: at as i64,
                event_id: id,
            });
        }
        Ok(out)
    }

    /// Puts deliveries given up back on the retry schedule, due now and with their attempts
    /// counted from zero: those named by `event_ids`, or every one when it is empty; audited
    /// (`redeliver`, with `who` and `why`) in each shard where one was. Returns how many were in
    /// the failed set (every shard's).
    pub async fn redeliver_webhooks(&self, event_ids: &[String], who: &str, why: &str) -> Result<usize, LedgerError> {
        // One script a shard: what it moves and the audit entry that says so, together.
        static REDELIVER: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
            redis::Script::new(
                "local ids = {}
                 if ARGV[4] == '1' then ids = redis.call('ZRANGE', KEYS[1], 0, -1)
                 else for i = 5, #ARGV do ids[#ids + 1] = ARGV[i] end end
                 local n = 0
                 for _, id in ipairs(ids) do
                   if redis.call('ZREM', KEYS[1], id) == 1 then
                     redis.call('HSET', KEYS[4] .. id, 'attempts', 0)
                     redis.call('ZADD', KEYS[2], ARGV[1], id)
                     n = n + 1
                   end
                 end
                 if n > 0 then
                   redis.call('XADD', KEYS[3], '*', 'out_trade_no', '', 'merchant', '', 'action', 'redeliver',
                     'who', ARGV[2], 'why', ARGV[3], 'from', 'given up', 'to', 'retrying',
                     'outcome', 'ok: ' .. n .. ' deliveries', 'at', ARGV[1])
                 end
                 return n",
            )
        });
        let mut n = 0;
        for shard in 0..self.shard_count() {
            let keys = self.shard_keys(shard);
            let mut inv = REDELIVER.prepare_invoke();
            inv.key(keys.webhook_failed()).key(keys.webhook_retry()).key(keys.audit()).key(keys.webhook(""));
            inv.arg(self.now_ms()).arg(who).arg(why).arg(if event_ids.is_empty() { "1" } else { "0" });
            for id in event_ids {
                inv.arg(id);
            }
            let moved: usize = inv.invoke_async(&mut self.con.clone()).await?;
            n += moved;
        }
        Ok(n)
    }
}
