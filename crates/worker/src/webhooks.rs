//! Webhooks: each final outcome POSTed to its merchant's URL, signed, delivered at least once.
//!
//! The outcome stream is the source. Workers read it through a consumer group (`webhooks`), so each
//! entry goes to one of them; an entry whose reader died is claimed by another after
//! `claim_idle`. A delivery that fails is moved to a retry schedule in Redis (a zset of event ids
//! plus one hash per delivery holding the body), so retries survive restarts and the stream's
//! trimming; after `max_attempts` it lands in the failed set, where `qfrefund webhooks` shows it
//! and an operator can redeliver it.
//!
//! The contract (README "Webhooks"): `POST` with `Content-Type: application/json`, the body is
//! the outcome event as JSON; `X-Qfrefund-Event-Id` is stable across redeliveries (de-duplicate
//! on it); `X-Qfrefund-Signature: sha256=<hex HMAC-SHA256 of the raw body with the merchant's
//! webhook secret>`. Any 2xx is success.

use std::collections::HashMap;
use std::time::Duration;

use ledger::{Event, Ledger};
use redis::AsyncCommands;
use sha2::{Digest, Sha256};
use tracing::{debug, info, warn};

use crate::runner::Shutdown;

/// Where and how one merchant receives its webhooks. `Debug` shows no secret.
#[derive(Clone)]
pub struct Webhook {
    pub url: String,
    secret: Vec<u8>,
}

impl Webhook {
    pub fn new(url: &str, secret: &str) -> Result<Self, String> {
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(format!("webhook url {url:?} must start with https:// (or http:// for tests)"));
        }
        if secret.len() < 16 {
            return Err("the webhook secret must be at least 16 characters".into());
        }
        Ok(Self { url: url.to_owned(), secret: secret.as_bytes().to_vec() })
    }

    /// The value of `X-Qfrefund-Signature` for `body`.
    pub fn signature(&self, body: &[u8]) -> String {
        format!("sha256={}", hex(&hmac_sha256(&self.secret, body)))
    }
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook").field("url", &self.url).finish_non_exhaustive()
    }
}

/// Retry schedule and limits.
#[derive(Debug, Clone)]
pub struct WebhookPolicy {
    pub timeout: Duration,
    pub retry_base: Duration,
    pub retry_cap: Duration,
    pub max_attempts: u32,
    /// A stream entry read by a worker that then vanished is taken over after this long.
    pub claim_idle: Duration,
}

impl Default for WebhookPolicy {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(5),
            retry_base: Duration::from_secs(10),
            retry_cap: Duration::from_secs(3600),
            // 10 s doubling to 1 h, then hourly: about a day in all.
            max_attempts: 30,
            claim_idle: Duration::from_secs(60),
        }
    }
}

/// HMAC-SHA256 (RFC 2104) over SHA-256 from the `sha2` crate already used for payload hashes.
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |b: u8| k.map(|x| x ^ b);
    let inner = Sha256::new().chain_update(pad(0x36)).chain_update(msg).finalize();
    Sha256::new().chain_update(pad(0x5c)).chain_update(inner).finalize().into()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

const GROUP: &str = "webhooks";

/// The JSON body of a webhook: the outcome event, with its type.
pub fn body_of(e: &Event) -> Vec<u8> {
    let mut v = serde_json::to_value(e).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert("type".into(), serde_json::Value::String(format!("refund.{}", e.state)));
    }
    serde_json::to_vec(&v).unwrap_or_default()
}

/// A failed delivery, as `qfrefund webhooks` lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FailedDelivery {
    pub event_id: String,
    pub out_trade_no: String,
    pub merchant: String,
    pub attempts: u32,
    pub last_error: String,
    pub failed_at: i64,
}

/// Deliveries that gave up, oldest first.
pub async fn failed(ledger: &Ledger, limit: usize) -> Result<Vec<FailedDelivery>, redis::RedisError> {
    let keys = ledger.keys();
    let mut con = ledger.connection();
    let ids: Vec<(String, f64)> =
        con.zrange_withscores(keys.webhook_failed(), 0, limit.saturating_sub(1) as isize).await?;
    let mut out = Vec::new();
    for (id, at) in ids {
        let h: HashMap<String, String> = con.hgetall(keys.webhook(&id)).await?;
        out.push(FailedDelivery {
            out_trade_no: h.get("out_trade_no").cloned().unwrap_or_default(),
            merchant: h.get("merchant").cloned().unwrap_or_default(),
            attempts: h.get("attempts").and_then(|v| v.parse().ok()).unwrap_or(0),
            last_error: h.get("error").cloned().unwrap_or_default(),
            failed_at: at as i64,
            event_id: id,
        });
    }
    Ok(out)
}

/// Puts failed deliveries back on the schedule, due now (all of them when `ids` is empty).
/// Returns how many.
pub async fn redeliver(ledger: &Ledger, ids: &[String]) -> Result<usize, redis::RedisError> {
    let keys = ledger.keys();
    let mut con = ledger.connection();
    let ids: Vec<String> = if ids.is_empty() { con.zrange(keys.webhook_failed(), 0, -1).await? } else { ids.to_vec() };
    let now = ledger.now_ms();
    let mut n = 0;
    for id in ids {
        let removed: u64 = con.zrem(keys.webhook_failed(), &id).await?;
        if removed > 0 {
            let _: () = redis::pipe()
                .hset(keys.webhook(&id), "attempts", 0)
                .zadd(keys.webhook_retry(), &id, now)
                .query_async(&mut con)
                .await?;
            n += 1;
        }
    }
    Ok(n)
}

/// Counts for metrics.
#[derive(Debug, Default)]
pub struct WebhookCounters {
    pub delivered: std::sync::atomic::AtomicU64,
    pub failed_attempts: std::sync::atomic::AtomicU64,
    pub gave_up: std::sync::atomic::AtomicU64,
}

/// Runs until shutdown: reads final outcomes from the stream, delivers them, and works through the
/// retry schedule. Only started when some merchant has a webhook.
pub async fn run(
    ledger: Ledger,
    hooks: HashMap<String, Webhook>,
    policy: WebhookPolicy,
    consumer: String,
    counters: std::sync::Arc<WebhookCounters>,
    shutdown: Shutdown,
) {
    let http = match reqwest::Client::builder().timeout(policy.timeout).build() {
        Ok(c) => c,
        Err(e) => {
            warn!(error = %e, "webhooks disabled: no HTTP client");
            return;
        }
    };
    let d = Dispatcher { ledger, hooks, policy, consumer, http, counters };
    let mut group_ready = false;
    let mut last_claim = std::time::Instant::now();
    while !shutdown.is_triggered() {
        if !group_ready {
            group_ready = d.create_group().await;
            if !group_ready {
                shutdown.sleep(Duration::from_secs(1)).await;
                continue;
            }
        }
        if let Err(e) = d.retries().await {
            warn!(error = %e, "webhook retries: Redis error");
        }
        if last_claim.elapsed() > d.policy.claim_idle / 2 {
            last_claim = std::time::Instant::now();
            if let Err(e) = d.take_over_orphans().await {
                warn!(error = %e, "webhooks: could not claim orphaned entries");
            }
        }
        match d.read_new().await {
            Ok(0) => {}
            Ok(n) => debug!(n, "webhook events handled"),
            Err(e) => {
                // NOGROUP after a Redis restart without the stream: create it again.
                if e.to_string().contains("NOGROUP") {
                    group_ready = false;
                }
                warn!(error = %e, "webhooks: reading the outcome stream failed");
                shutdown.sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

struct Dispatcher {
    ledger: Ledger,
    hooks: HashMap<String, Webhook>,
    policy: WebhookPolicy,
    consumer: String,
    http: reqwest::Client,
    counters: std::sync::Arc<WebhookCounters>,
}

impl Dispatcher {
    /// The group starts at the stream's end when first created: outcomes from before webhooks
    /// were configured are not sent.
    async fn create_group(&self) -> bool {
        let r: Result<(), redis::RedisError> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(self.ledger.keys().events())
            .arg(GROUP)
            .arg("$")
            .arg("MKSTREAM")
            .query_async(&mut self.ledger.connection())
            .await;
        match r {
            Ok(()) => true,
            Err(e) if e.to_string().contains("BUSYGROUP") => true,
            Err(e) => {
                warn!(error = %e, "webhooks: cannot create the consumer group");
                false
            }
        }
    }

    /// New stream entries for this consumer (blocks up to 1 s).
    async fn read_new(&self) -> Result<usize, redis::RedisError> {
        let reply: Option<redis::streams::StreamReadReply> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(GROUP)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(100)
            .arg("BLOCK")
            .arg(1000)
            .arg("STREAMS")
            .arg(self.ledger.keys().events())
            .arg(">")
            .query_async(&mut self.ledger.connection())
            .await?;
        let entries: Vec<redis::streams::StreamId> =
            reply.map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect()).unwrap_or_default();
        let n = entries.len();
        self.handle_entries(entries).await?;
        Ok(n)
    }

    /// Entries read by a consumer that stopped before acknowledging them.
    async fn take_over_orphans(&self) -> Result<(), redis::RedisError> {
        let reply: redis::streams::StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
            .arg(self.ledger.keys().events())
            .arg(GROUP)
            .arg(&self.consumer)
            .arg(self.policy.claim_idle.as_millis() as u64)
            .arg("0-0")
            .arg("COUNT")
            .arg(100)
            .query_async(&mut self.ledger.connection())
            .await?;
        if !reply.claimed.is_empty() {
            info!(n = reply.claimed.len(), "webhooks: took over entries another worker read but never acknowledged");
        }
        self.handle_entries(reply.claimed).await
    }

    /// Delivers what needs delivering, then acknowledges the entries handled, in one XACK: most
    /// entries (queued, submitting, …) need no webhook, and one round trip each would be waste.
    /// On a Redis error, the entries handled so far are still acknowledged; the rest stay pending
    /// and are taken over later.
    async fn handle_entries(&self, entries: Vec<redis::streams::StreamId>) -> Result<(), redis::RedisError> {
        let mut handled: Vec<String> = Vec::with_capacity(entries.len());
        let outcome = self.deliver_entries(entries, &mut handled).await;
        if !handled.is_empty() {
            let _: u64 = self.ledger.connection().xack(self.ledger.keys().events(), GROUP, &handled).await?;
        }
        outcome
    }

    async fn deliver_entries(
        &self,
        entries: Vec<redis::streams::StreamId>,
        handled: &mut Vec<String>,
    ) -> Result<(), redis::RedisError> {
        for entry in entries {
            let fields: HashMap<String, String> = entry
                .map
                .iter()
                .filter_map(|(k, v)| redis::from_redis_value::<String>(v.clone()).ok().map(|v| (k.clone(), v)))
                .collect();
            let event = Event::from_stream(entry.id.clone(), fields);
            if event.is_final()
                && let Some(hook) = self.hooks.get(&event.merchant)
            {
                let body = body_of(&event);
                match self.deliver(hook, &event.id, &body).await {
                    Ok(()) => {}
                    Err(why) => self.schedule(&event, &body, 1, &why).await?,
                }
            }
            handled.push(entry.id);
        }
        Ok(())
    }

    async fn deliver(&self, hook: &Webhook, id: &str, body: &[u8]) -> Result<(), String> {
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

    fn backoff(&self, attempts: u32) -> Duration {
        let exp = self.policy.retry_base.saturating_mul(1u32 << attempts.min(20).saturating_sub(1));
        let capped = exp.min(self.policy.retry_cap);
        // Full jitter over the upper half: spread, but never much sooner than planned.
        capped / 2 + capped.mul_f64(fastrand::f64() / 2.0)
    }

    /// Records a failed attempt: the next one on the schedule, or the failed set after the last.
    async fn schedule(&self, e: &Event, body: &[u8], attempts: u32, why: &str) -> Result<(), redis::RedisError> {
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
            pipe.zadd(keys.webhook_retry(), &e.id, next);
        }
        pipe.query_async::<()>(&mut self.ledger.connection()).await
    }

    /// Deliveries due on the schedule. Each is held for twice the HTTP timeout before it is tried,
    /// so two workers do not send it at once (and a worker dying mid-delivery only delays it).
    async fn retries(&self) -> Result<(), redis::RedisError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4231 test cases 1 and 6 (a key longer than the block).
    #[test]
    fn hmac_sha256_matches_rfc_4231() {
        let t1 = hmac_sha256(&[0x0b; 20], b"Hi There");
        assert_eq!(hex(&t1), "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
        let t6 = hmac_sha256(&[0xaa; 131], b"Test Using Larger Than Block-Size Key - Hash Key First");
        assert_eq!(hex(&t6), "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let w = Webhook::new("https://shop.example/hooks", "whsec-0123456789abcdef").unwrap();
        assert!(!format!("{w:?}").contains("whsec"));
        assert!(Webhook::new("ftp://x", "whsec-0123456789abcdef").is_err());
        assert!(Webhook::new("https://x", "short").is_err());
    }
}
