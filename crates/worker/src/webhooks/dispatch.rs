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
//! Each group reader blocks on its own connection, so the blocking read never holds up the
//! ledger's shared one.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ledger::{Event, Ledger, RedisConn};
use redis::AsyncCommands;
use tracing::{debug, info, warn};

use super::{Webhook, WebhookCounters, WebhookPolicy, body_of, event_id};
use crate::shutdown::Shutdown;

/// The group qfrefund used before there was one per merchant.
const LEGACY_GROUP: &str = "webhooks";

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
    let d = Arc::new(Dispatcher { ledger, hooks, policy, consumer, http, counters });
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
    let mut con: Option<RedisConn> = None;
    let mut group_ready = false;
    let mut last_claim: Option<Instant> = None;
    while !shutdown.is_triggered() {
        let mut c = match &con {
            Some(c) => c.clone(),
            None => match d.ledger.connect_again().await {
                Ok(c) => {
                    con = Some(c.clone());
                    c
                }
                Err(e) => {
                    warn!(error = %e, merchant, "webhooks: no connection for the outcome stream");
                    shutdown.sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
        };
        if !group_ready {
            group_ready = d.create_group(&group).await;
            if !group_ready {
                shutdown.sleep(Duration::from_secs(1)).await;
                continue;
            }
        }
        if last_claim.is_none_or(|t| t.elapsed() > d.policy.claim_idle / 2) {
            last_claim = Some(Instant::now());
            if let Err(e) = d.take_over_orphans(&group, &merchant).await {
                warn!(error = %e, merchant, "webhooks: could not claim orphaned entries");
            }
        }
        match d.read_new(&mut c, &group, &merchant).await {
            Ok(0) => {}
            Ok(n) => debug!(n, merchant, "webhook events handled"),
            Err(e) => {
                // NOGROUP after a Redis restart without the stream: create it again.
                if e.to_string().contains("NOGROUP") {
                    group_ready = false;
                }
                warn!(error = %e, merchant, "webhooks: reading the outcome stream failed");
                shutdown.sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// The stream id just before `id` (`XGROUP CREATE` delivers what comes after its id).
fn id_before(id: &str) -> String {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    let (ms, seq) = (ms.parse::<u64>().unwrap_or(0), seq.parse::<u64>().unwrap_or(0));
    match (ms, seq) {
        (_, s) if s > 0 => format!("{ms}-{}", s - 1),
        (0, _) => "0-0".into(),
        (m, _) => format!("{}-{}", m - 1, u64::MAX),
    }
}

pub(super) struct Dispatcher {
    pub(super) ledger: Ledger,
    pub(super) hooks: HashMap<String, Webhook>,
    pub(super) policy: WebhookPolicy,
    consumer: String,
    http: reqwest::Client,
    pub(super) counters: Arc<WebhookCounters>,
}

impl Dispatcher {
    /// Creates `group` if it does not exist: where the legacy group stands, else at the stream's
    /// end.
    async fn create_group(&self, group: &str) -> bool {
        let start = match self.legacy_position().await {
            Ok(Some(id)) => id,
            Ok(None) => "$".to_owned(),
            Err(e) => {
                warn!(error = %e, "webhooks: cannot read the outcome stream's groups");
                return false;
            }
        };
        let r: Result<(), redis::RedisError> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(self.ledger.keys().events())
            .arg(group)
            .arg(&start)
            .arg("MKSTREAM")
            .query_async(&mut self.ledger.connection())
            .await;
        match r {
            Ok(()) => {
                info!(group, start, "webhooks: consumer group created");
                true
            }
            Err(e) if e.to_string().contains("BUSYGROUP") => true,
            Err(e) => {
                warn!(error = %e, group, "webhooks: cannot create the consumer group");
                false
            }
        }
    }

    /// Where the pre-upgrade group `webhooks` stands: just before its oldest unacknowledged entry,
    /// else its last delivered id. `None` without that group (or without the stream).
    async fn legacy_position(&self) -> Result<Option<String>, redis::RedisError> {
        let mut con = self.ledger.connection();
        let groups: Vec<HashMap<String, redis::Value>> =
            match redis::cmd("XINFO").arg("GROUPS").arg(self.ledger.keys().events()).query_async(&mut con).await {
                Ok(g) => g,
                Err(e) if e.to_string().contains("no such key") => return Ok(None),
                Err(e) => return Err(e),
            };
        let text = |g: &HashMap<String, redis::Value>, k: &str| {
            g.get(k).and_then(|v| redis::from_redis_value::<String>(v.clone()).ok()).unwrap_or_default()
        };
        let Some(legacy) = groups.iter().find(|g| text(g, "name") == LEGACY_GROUP) else {
            return Ok(None);
        };
        if text(legacy, "pending").parse::<u64>().unwrap_or(0) > 0 {
            let (_, oldest, _, _): (u64, Option<String>, Option<String>, redis::Value) =
                redis::cmd("XPENDING").arg(self.ledger.keys().events()).arg(LEGACY_GROUP).query_async(&mut con).await?;
            if let Some(oldest) = oldest {
                return Ok(Some(id_before(&oldest)));
            }
        }
        Ok(Some(text(legacy, "last-delivered-id")).filter(|s| !s.is_empty()))
    }

    /// New stream entries for this consumer (blocks up to 1 s, on the reader's own connection).
    async fn read_new(&self, con: &mut RedisConn, group: &str, merchant: &str) -> Result<usize, redis::RedisError> {
        let reply: Option<redis::streams::StreamReadReply> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(group)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(100)
            .arg("BLOCK")
            .arg(1000)
            .arg("STREAMS")
            .arg(self.ledger.keys().events())
            .arg(">")
            .query_async(con)
            .await?;
        let entries: Vec<redis::streams::StreamId> =
            reply.map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect()).unwrap_or_default();
        let n = entries.len();
        self.handle_entries(group, merchant, entries).await?;
        Ok(n)
    }

    /// Entries read by a consumer of `group` that stopped before acknowledging them.
    async fn take_over_orphans(&self, group: &str, merchant: &str) -> Result<(), redis::RedisError> {
        let reply: redis::streams::StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
            .arg(self.ledger.keys().events())
            .arg(group)
            .arg(&self.consumer)
            .arg(self.policy.claim_idle.as_millis() as u64)
            .arg("0-0")
            .arg("COUNT")
            .arg(100)
            .query_async(&mut self.ledger.connection())
            .await?;
        if !reply.claimed.is_empty() {
            info!(
                n = reply.claimed.len(),
                group, "webhooks: took over entries another worker read but never acknowledged"
            );
        }
        self.handle_entries(group, merchant, reply.claimed).await
    }

    /// Delivers `merchant`'s final outcomes among `entries`, then acknowledges the entries handled
    /// in one XACK: most entries (other merchants, queued, submitting, …) need nothing, and one
    /// round trip each would be waste. An outcome counts as handled once delivered or written to
    /// the retry schedule. On a Redis error, the entries handled so far are still acknowledged;
    /// the rest stay pending and are taken over later.
    async fn handle_entries(
        &self,
        group: &str,
        merchant: &str,
        entries: Vec<redis::streams::StreamId>,
    ) -> Result<(), redis::RedisError> {
        let mut handled: Vec<String> = Vec::with_capacity(entries.len());
        let outcome = self.deliver_entries(merchant, entries, &mut handled).await;
        if !handled.is_empty() {
            let _: u64 = self.ledger.connection().xack(self.ledger.keys().events(), group, &handled).await?;
        }
        outcome
    }

    async fn deliver_entries(
        &self,
        merchant: &str,
        entries: Vec<redis::streams::StreamId>,
        handled: &mut Vec<String>,
    ) -> Result<(), redis::RedisError> {
        for entry in entries {
            let fields: HashMap<String, String> = entry
                .map
                .iter()
                .filter_map(|(k, v)| redis::from_redis_value::<String>(v.clone()).ok().map(|v| (k.clone(), v)))
                .collect();
            let fence = fields.get("fence").cloned().unwrap_or_default();
            let field = |k: &str| fields.get(k).map_or("", String::as_str);
            let id = event_id(field("merchant"), field("out_trade_no"), field("state"));
            let event = Event::from_stream(id, fields);
            if event.is_final()
                && event.merchant == merchant
                && let Some(hook) = self.hooks.get(merchant)
            {
                let body = body_of(&event, &entry.id, &fence);
                if let Err(why) = self.deliver(hook, &event.id, &body).await {
                    self.schedule(&event, &body, 1, &why).await?;
                }
            }
            handled.push(entry.id);
        }
        Ok(())
    }

    pub(super) async fn deliver(&self, hook: &Webhook, id: &str, body: &[u8]) -> Result<(), String> {
        let sent = self
            .http
            .post(&hook.url)
            .header("Content-Type", "application/json")
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
    fn the_id_before_a_stream_id_is_just_before_it() {
        assert_eq!(id_before("1700000000000-3"), "1700000000000-2");
        assert_eq!(id_before("1700000000000-0"), format!("1699999999999-{}", u64::MAX));
        assert_eq!(id_before("0-0"), "0-0");
        assert_eq!(group_of("shop"), "webhooks:shop");
    }
}
