//! The retry schedule: a zset of event ids (due time) plus one hash per delivery holding its body,
//! so retries survive restarts and the stream's trimming. Only a worker holding the merchant's
//! hook writes a delivery here (it read the outcome from that merchant's group); any worker may
//! find it due, and one without the hook leaves it for one that has it.

use std::collections::HashMap;
use std::time::Duration;

use ledger::Event;
use redis::AsyncCommands;
use tracing::{debug, info, warn};

use super::dispatch::Dispatcher;

impl Dispatcher {
    fn backoff(&self, attempts: u32) -> Duration {
        let exp = self.policy.retry_base.saturating_mul(1u32 << attempts.min(20).saturating_sub(1));
        let capped = exp.min(self.policy.retry_cap);
        // Full jitter over the upper half: spread, but never much sooner than planned.
        capped / 2 + capped.mul_f64(fastrand::f64() / 2.0)
    }

    /// Records a failed attempt: the next one on the schedule, or the failed set after the last.
    pub(super) async fn schedule(
        &self,
        e: &Event,
        body: &[u8],
        attempts: u32,
        why: &str,
    ) -> Result<(), redis::RedisError> {
        let keys = self.ledger.keys();
        let now = self.ledger.now_ms();
        let mut pipe = redis::pipe();
        pipe.hset_multiple(
            keys.webhook(&e.id),
            &[
                ("out_trade_no", e.out_trade_no.as_str()),
                ("merchant", e.merchant.as_str()),
                ("error", why),
                ("attempts", &attempts.to_string()),
            ],
        )
        .hset(keys.webhook(&e.id), "body", body);
        if attempts >= self.policy.max_attempts {
            warn!(event = %e.id, out_trade_no = %e.out_trade_no, attempts, error = why, "webhook given up: see `qfrefund webhooks`");
            self.counters.gave_up.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            pipe.zrem(keys.webhook_retry(), &e.id).zadd(keys.webhook_failed(), &e.id, now);
        } else {
            let next = now + self.backoff(attempts).as_millis() as i64;
            debug!(event = %e.id, attempts, error = why, "webhook failed; retrying later");
            // A replayed outcome may find its id given up already: it is back on the schedule.
            pipe.zadd(keys.webhook_retry(), &e.id, next).zrem(keys.webhook_failed(), &e.id);
        }
        pipe.query_async::<()>(&mut self.ledger.connection()).await
    }

    /// Deliveries due on the schedule. Each is held for twice the HTTP timeout before it is tried,
    /// so two workers do not send it at once (and a worker dying mid-delivery only delays it).
    pub(super) async fn retries(&self) -> Result<(), redis::RedisError> {
        let keys = self.ledger.keys();
        let mut con = self.ledger.connection();
        let now = self.ledger.now_ms();
        let due: Vec<String> = con.zrangebyscore_limit(keys.webhook_retry(), "-inf", now, 0, 20).await?;
        let hold = now + 2 * self.policy.timeout.as_millis() as i64;
        for id in due {
            // Take it only if it is still due (another worker may have just taken it).
            let taken: Option<f64> = redis::cmd("ZADD")
                .arg(keys.webhook_retry())
                .arg("XX")
                .arg("GT")
                .arg("CH")
                .arg(hold)
                .arg(&id)
                .query_async(&mut con)
                .await
                .map(|n: u64| (n > 0).then_some(0.0))?;
            if taken.is_none() {
                continue;
            }
            let h: HashMap<String, String> = con.hgetall(keys.webhook(&id)).await?;
            let (Some(merchant), Some(body)) = (h.get("merchant"), h.get("body")) else {
                let _: () = con.zrem(keys.webhook_retry(), &id).await?;
                continue;
            };
            let attempts: u32 = h.get("attempts").and_then(|v| v.parse().ok()).unwrap_or(0);
            let Some(hook) = self.hooks.get(merchant) else {
                // This worker lacks that merchant's webhook: leave it for one that has it.
                let _: () = con.zadd(keys.webhook_retry(), &id, now + 60_000).await?;
                continue;
            };
            match self.deliver(hook, &id, body.as_bytes()).await {
                Ok(()) => {
                    let _: () = redis::pipe()
                        .zrem(keys.webhook_retry(), &id)
                        .del(keys.webhook(&id))
                        .query_async(&mut con)
                        .await?;
                    info!(event = %id, attempts = attempts + 1, "webhook delivered after retrying");
                }
                Err(why) => {
                    let e = Event::from_stream(
                        id.clone(),
                        HashMap::from([
                            ("out_trade_no".to_owned(), h.get("out_trade_no").cloned().unwrap_or_default()),
                            ("merchant".to_owned(), merchant.clone()),
                        ]),
                    );
                    self.schedule(&e, body.as_bytes(), attempts + 1, &why).await?;
                }
            }
        }
        Ok(())
    }
}
