//! Reading the outcome stream and delivering: one consumer group per merchant with a webhook.
//!
//! Why a group per merchant: a group hands each entry to exactly one of its consumers, and that
//! consumer acknowledges it. With one group for the whole fleet, a worker without merchant A's
//! hook read A's outcomes and acknowledged them undelivered: lost, and no failure counted. Now a
//! worker joins `webhooks:<merchant>` only for the merchants whose hook it holds, so every entry of
//! that group is read by someone who can deliver it, and it is acknowledged only once delivered or
//! written to the retry schedule (which only such workers write). Consequences:
//!
//! - An outcome of a merchant no worker has a hook for is in no group's way: each group
//!   acknowledges the entries that are not its merchant's final outcomes as it reads them, so
//!   nothing piles up in a pending list.
//! - While no worker holding A's hook runs, A's group keeps its place in the stream; the first
//!   one back delivers what was settled meanwhile (unless the stream's cap trimmed it).
//! - A group is created at the stream's end the first time a worker holds that merchant's hook:
//!   outcomes from before are not sent. An upgrade from the single group `webhooks` starts each new
//!   group where that one stood (before its oldest unacknowledged entry), so nothing settled
//!   during the upgrade is skipped; some outcomes may be sent twice meanwhile.
//! - A worker that dies holding entries unacknowledged: after `claim_idle`, another reader of the
//!   same group takes them over (`XAUTOCLAIM`).
//!
//! Each group reader is a [`ledger::StreamReader`], which blocks on a connection of its own, so
//! the blocking read never holds up the ledger's shared one.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ledger::{Event, Ledger, LedgerError, StreamReader, WebhookAttempt};
use tracing::{Instrument, debug, info, warn};

use super::{Webhook, WebhookCounters, WebhookPolicy, announced, body_of, delivery_id};
use crate::shutdown::Shutdown;

/// How long a delivery waits for its refund's record to find the trace to join.
const TRACE_LOOKUP: Duration = Duration::from_millis(200);

/// The group qfrefund used before there was one per merchant.
const LEGACY_GROUP: &str = "webhooks";

/// Entries read (or taken over) at a time.
const BATCH: usize = 100;

/// The consumer group of `merchant`'s webhook.
pub fn group_of(merchant: &str) -> String {
    format!("webhooks:{merchant}")
}

/// Runs until shutdown: one reader per merchant with a hook delivers that merchant's final
/// outcomes; this task works through the retry schedule. Only started when some merchant has a
/// webhook.
pub async fn run(
    ledger: Ledger,
    hooks: HashMap<String, Webhook>,
    policy: WebhookPolicy,
    consumer: String,
    counters: Arc<WebhookCounters>,
    shutdown: Shutdown,
) {
    let http = match reqwest::Client::builder().timeout(policy.timeout).build() {
        Ok(c) => c,
        Err(e) => {
            warn!(error = %e, "webhooks disabled: no HTTP client");
            return;
        }
    };
    let started_ms = ledger.now_ms();
    let d = Arc::new(Dispatcher { ledger, hooks, policy, consumer, http, counters, started_ms });
    let readers: Vec<_> =
        d.hooks.keys().map(|m| tokio::spawn(read_group(d.clone(), m.clone(), shutdown.clone()))).collect();
    while !shutdown.is_triggered() {
        if let Err(e) = d.retries().await {
            warn!(error = %e, "webhook retries: Redis error");
        }
        shutdown.sleep(Duration::from_millis(500)).await;
    }
    for r in readers {
        let _ = r.await;
    }
}

/// Reads `merchant`'s group until shutdown, on a connection of its own.
async fn read_group(d: Arc<Dispatcher>, merchant: String, shutdown: Shutdown) {
    let group = group_of(&merchant);
    // The merchant's refunds, and so its outcome entries, are all in its shard's stream.
    let shard = d.ledger.shard_of(&merchant);
    let mut reader: Option<StreamReader> = None;
    let mut group_ready = false;
    let mut last_claim: Option<Instant> = None;
    while !shutdown.is_triggered() {
        let r = match &mut reader {
            Some(r) => r,
            None => match d.ledger.stream_reader(shard, &group, &d.consumer).await {
                Ok(r) => reader.insert(r),
                Err(e) => {
                    warn!(error = %e, merchant, "webhooks: no connection for the outcome stream");
                    shutdown.sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
        };
        if !group_ready {
            group_ready = d.create_group(shard, &group).await;
            if !group_ready {
                shutdown.sleep(Duration::from_secs(1)).await;
                continue;
            }
        }
        if last_claim.is_none_or(|t| t.elapsed() > d.policy.claim_idle / 2) {
            last_claim = Some(Instant::now());
            if let Err(e) = d.take_over_orphans(r, &merchant).await {
                warn!(error = %e, merchant, "webhooks: could not claim orphaned entries");
            }
        }
        match d.read_new(r, &merchant).await {
            Ok(0) => {}
            Ok(n) => debug!(n, merchant, "webhook events handled"),
            Err(e) => {
                // The group is gone after a Redis restart without the stream: create it again.
                if matches!(e, LedgerError::NoGroup(_)) {
                    group_ready = false;
                }
                warn!(error = %e, merchant, "webhooks: reading the outcome stream failed");
                shutdown.sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

pub(super) struct Dispatcher {
    pub(super) ledger: Ledger,
    pub(super) hooks: HashMap<String, Webhook>,
    pub(super) policy: WebhookPolicy,
    consumer: String,
    http: reqwest::Client,
    pub(super) counters: Arc<WebhookCounters>,
    /// When this dispatcher started (ms, Redis' clock).
    started_ms: i64,
}

impl Dispatcher {
    /// Creates `group` if it does not exist: where the legacy group stands, else just before this
    /// dispatcher started (outcomes this worker wrote before its group existed are delivered, not
    /// skipped as a group at the stream's end would; at most five minutes back, so a group lost
    /// with a Redis restart does not redeliver a long past).
    async fn create_group(&self, shard: usize, group: &str) -> bool {
        let since = (self.started_ms - 1_000).max(self.ledger.now_ms() - 300_000);
        let start = match self.ledger.group_position(shard, LEGACY_GROUP).await {
            Ok(start) => Some(start.unwrap_or_else(|| format!("{since}-0"))),
            Err(e) => {
                warn!(error = %e, "webhooks: cannot read the outcome stream's groups");
                return false;
            }
        };
        match self.ledger.create_group(shard, group, start.as_deref()).await {
            Ok(true) => {
                info!(group, start = start.as_deref().unwrap_or("$"), "webhooks: consumer group created");
                true
            }
            Ok(false) => true,
            Err(e) => {
                warn!(error = %e, group, "webhooks: cannot create the consumer group");
                false
            }
        }
    }

    /// New stream entries for this consumer (blocks up to 1 s, on the reader's own connection).
    async fn read_new(&self, reader: &mut StreamReader, merchant: &str) -> Result<usize, LedgerError> {
        let entries = reader.read_new(BATCH, Duration::from_secs(1)).await?;
        let n = entries.len();
        self.handle_entries(reader, merchant, entries).await?;
        Ok(n)
    }

    /// Entries read by a consumer of the group that stopped before acknowledging them.
    async fn take_over_orphans(&self, reader: &StreamReader, merchant: &str) -> Result<(), LedgerError> {
        let claimed = reader.take_over(self.policy.claim_idle, BATCH).await?;
        if !claimed.is_empty() {
            info!(
                n = claimed.len(),
                group = reader.group(),
                "webhooks: took over entries another worker read but never acknowledged"
            );
        }
        self.handle_entries(reader, merchant, claimed).await
    }

    /// Delivers `merchant`'s final outcomes among `entries`, then acknowledges the entries handled
    /// in one XACK: most entries (other merchants, queued, submitting, …) need nothing, and one
    /// round trip each would be waste. An outcome counts as handled once delivered or written to
    /// the retry schedule. On a Redis error, the entries handled so far are still acknowledged;
    /// the rest stay pending and are taken over later.
    async fn handle_entries(
        &self,
        reader: &StreamReader,
        merchant: &str,
        entries: Vec<Event>,
    ) -> Result<(), LedgerError> {
        let mut handled: Vec<String> = Vec::with_capacity(entries.len());
        let outcome = self.deliver_entries(merchant, entries, &mut handled).await;
        reader.ack(&handled).await?;
        outcome
    }

    /// Each entry comes with its stream id as its `id`; what is delivered carries the outcome's
    /// stable [`delivery_id`] instead, and the stream id as `stream_id`.
    async fn deliver_entries(
        &self,
        merchant: &str,
        entries: Vec<Event>,
        handled: &mut Vec<String>,
    ) -> Result<(), LedgerError> {
        for mut event in entries {
            let id = delivery_id(&event);
            let stream_id = std::mem::replace(&mut event.id, id);
            if announced(&event)
                && event.merchant == merchant
                && let Some(hook) = self.hooks.get(merchant)
            {
                let body = body_of(&event, &stream_id);
                let span = self.delivery_span(&event.id, merchant, &event.out_trade_no, 1).await;
                if let Err(why) = self.deliver(hook, &event.id, &body).instrument(span).await {
                    let attempt = WebhookAttempt {
                        event_id: &event.id,
                        out_trade_no: &event.out_trade_no,
                        merchant: &event.merchant,
                        body: &body,
                        attempts: 1,
                        error: &why,
                    };
                    self.schedule(&attempt).await?;
                }
            }
            handled.push(stream_id);
        }
        Ok(())
    }

    /// The span of one delivery of `event_id`: in the trace of the producer of the refund when it
    /// came with one (one read of its record, and only while spans are exported: the outcome
    /// stream does not carry the trace). The read is bounded by [`TRACE_LOOKUP`]: a slow Redis
    /// costs the span its parent, never the delivery its lease.
    pub(super) async fn delivery_span(
        &self,
        event_id: &str,
        merchant: &str,
        out_trade_no: &str,
        attempt: u32,
    ) -> tracing::Span {
        let span = tracing::info_span!("webhook", event_id, out_trade_no, attempt, trace_id = tracing::field::Empty);
        if qfrefund_telemetry::traces::active()
            && let Ok(Ok(Some(rec))) = tokio::time::timeout(TRACE_LOOKUP, self.ledger.get(merchant, out_trade_no)).await
            && let Some(id) =
                rec.traceparent.as_deref().and_then(|tp| qfrefund_telemetry::traces::join_trace(&span, tp))
        {
            span.record("trace_id", tracing::field::display(&id));
        }
        span
    }

    pub(super) async fn deliver(&self, hook: &Webhook, id: &str, body: &[u8]) -> Result<(), String> {
        // Each attempt is signed afresh (a receiver refuses an old timestamp: a replay).
        let timestamp =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        let sent = self
            .http
            .post(&hook.url)
            .header("Content-Type", "application/json")
            .header("User-Agent", concat!("qfrefund/", env!("CARGO_PKG_VERSION")))
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", hook.standard_signature(id, timestamp, body))
            .header("X-Qfrefund-Event-Id", id)
            .header("X-Qfrefund-Signature", hook.signature(body))
            .body(body.to_vec())
            .send()
            .await;
        use std::sync::atomic::Ordering::Relaxed;
        match sent {
            Ok(r) if r.status().is_success() => {
                self.counters.delivered.fetch_add(1, Relaxed);
                Ok(())
            }
            Ok(r) => {
                self.counters.failed_attempts.fetch_add(1, Relaxed);
                Err(format!("HTTP {}", r.status().as_u16()))
            }
            Err(e) => {
                self.counters.failed_attempts.fetch_add(1, Relaxed);
                // Never the URL's query string or anything from the body: just what went wrong.
                Err(if e.is_timeout() { "timeout".into() } else { "connection failed".into() })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_merchant_has_a_group_of_its_own() {
        assert_eq!(group_of("shop"), "webhooks:shop");
        assert_ne!(group_of(""), LEGACY_GROUP, "no merchant reads the legacy group");
    }
}
