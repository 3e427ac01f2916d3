//! The retry schedule, kept by the ledger (a zset of event ids by due time plus one hash per
//! delivery holding its body), so retries survive restarts and the stream's trimming. Only a
//! worker holding the merchant's hook writes a delivery there (it read the outcome from that
//! merchant's group); any worker may find it due, and one without the hook leaves it for one that
//! has it. This file decides when and whether; the ledger's webhook operations keep the books.

use std::time::Duration;

use ledger::{LedgerError, WebhookAttempt};
use tracing::{Instrument, debug, info, warn};

use super::dispatch::Dispatcher;

/// Due deliveries looked at per pass.
const PASS: usize = 20;

/// How long a delivery due for a merchant this worker has no hook for is left to other workers.
const LEAVE_FOR_OTHERS_MS: i64 = 60_000;

impl Dispatcher {
    fn backoff(&self, attempts: u32) -> Duration {
        let exp = self.policy.retry_base.saturating_mul(1u32 << attempts.min(20).saturating_sub(1));
        let capped = exp.min(self.policy.retry_cap);
        // Full jitter over the upper half: spread, but never much sooner than planned.
        capped / 2 + capped.mul_f64(fastrand::f64() / 2.0)
    }

    /// Records a failed attempt: the next one on the schedule, or the failed set after the last.
    pub(super) async fn schedule(&self, a: &WebhookAttempt<'_>) -> Result<(), LedgerError> {
        if a.attempts >= self.policy.max_attempts {
            warn!(
                event = %a.event_id,
                out_trade_no = %a.out_trade_no,
                attempts = a.attempts,
                error = a.error,
                "webhook given up: see `qfrefund list --webhook-failed`"
            );
            self.counters.gave_up.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.ledger.give_up_webhook(a).await
        } else {
            let next = self.ledger.now_ms() + self.backoff(a.attempts).as_millis() as i64;
            debug!(event = %a.event_id, attempts = a.attempts, error = a.error, "webhook failed; retrying later");
            // A replayed outcome may find its id given up already: it is back on the schedule.
            self.ledger.schedule_webhook_retry(a, next).await
        }
    }

    /// Deliveries due on the schedule. Each is held for twice the HTTP timeout before it is tried,
    /// so two workers do not send it at once (and a worker dying mid-delivery only delays it).
    pub(super) async fn retries(&self) -> Result<(), LedgerError> {
        for shard in 0..self.ledger.shard_count() {
            self.retries_in(shard).await?;
        }
        Ok(())
    }

    async fn retries_in(&self, shard: usize) -> Result<(), LedgerError> {
        let now = self.ledger.now_ms();
        let due = self.ledger.due_webhooks(shard, PASS).await?;
        let hold = now + 2 * self.policy.timeout.as_millis() as i64;
        for id in due {
            // Taken only if it is still due (another worker may have just taken it).
            let Some(d) = self.ledger.take_webhook(shard, &id, hold).await? else { continue };
            let Some(hook) = self.hooks.get(&d.merchant) else {
                // This worker lacks that merchant's webhook: leave it for one that has it.
                self.ledger.postpone_webhook(shard, &id, now + LEAVE_FOR_OTHERS_MS).await?;
                continue;
            };
            let span = self.delivery_span(&id, &d.merchant, &d.out_trade_no, d.attempts + 1).await;
            match self.deliver(hook, &id, &d.body).instrument(span).await {
                Ok(()) => {
                    self.ledger.webhook_delivered(shard, &id).await?;
                    info!(event = %id, attempts = d.attempts + 1, "webhook delivered after retrying");
                }
                Err(why) => {
                    let attempt = WebhookAttempt {
                        event_id: &id,
                        out_trade_no: &d.out_trade_no,
                        merchant: &d.merchant,
                        body: &d.body,
                        attempts: d.attempts + 1,
                        error: &why,
                    };
                    self.schedule(&attempt).await?;
                }
            }
        }
        Ok(())
    }
}
