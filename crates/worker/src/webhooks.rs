//! Webhooks: each final outcome POSTed to its merchant's URL, signed, delivered at least once.
//!
//! The outcome stream is the source. Workers read it through one consumer group per merchant with a
//! webhook (`webhooks:<merchant>`, joined only by workers holding that hook; see [`dispatch`]),
//! so each outcome goes to one worker that can deliver it; an entry whose reader died is claimed
//! by another after `claim_idle`. A delivery that fails is moved to the ledger's retry schedule
//! (see `retry`), so retries survive restarts and the stream's trimming; after `max_attempts`
//! it lands in the failed set, where `qfrefund list --webhook-failed` shows it and
//! `qfrefund redeliver` sends it again ([`ledger::Ledger::failed_webhooks`],
//! [`ledger::Ledger::redeliver_webhooks`]).
//!
//! This module speaks no Redis: reading the stream through consumer groups
//! ([`ledger::StreamReader`]) and keeping the schedules are ledger operations.
//!
//! The contract (docs/outcomes.md, "Webhooks"): `POST` with `Content-Type: application/json`, the body is
//! the outcome event as JSON (final outcomes, and a refund entering `needs_review`: [`announced`]); `X-Qfrefund-Event-Id` (and the body's `id`) is stable across
//! redeliveries and across a replay of the same outcome after a Redis rollback ([`event_id`]:
//! de-duplicate on it). Signed as Standard Webhooks specifies (`webhook-id` — the event id —,
//! `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256 of id.timestamp.body>`), so a
//! receiver verifies it with that project's libraries in any language and refuses replays by the
//! timestamp; and, for one more version, as before: `X-Qfrefund-Signature: sha256=<hex
//! HMAC-SHA256 of the raw body with the merchant's webhook secret>`. `User-Agent:
//! qfrefund/<version>`. Any 2xx is success.

mod dispatch;
mod retry;

use std::time::Duration;

use ledger::Event;
use sha2::{Digest, Sha256};

pub use dispatch::{group_of, run};

/// Where and how one merchant receives its webhooks. `Debug` shows no secret.
#[derive(Clone)]
pub struct Webhook {
    pub url: String,
    secret: Vec<u8>,
    /// The Standard Webhooks key: the bytes after `whsec_` of a secret written so (base64, as
    /// that project's libraries take it), else the secret's own bytes.
    standard_key: Vec<u8>,
}

impl Webhook {
    pub fn new(url: &str, secret: &str) -> Result<Self, String> {
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(format!("webhook url {url:?} must start with https:// (or http:// for tests)"));
        }
        if secret.len() < 16 {
            return Err("the webhook secret must be at least 16 characters".into());
        }
        use base64::Engine;
        let standard_key = secret
            .strip_prefix("whsec_")
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .unwrap_or_else(|| secret.as_bytes().to_vec());
        Ok(Self { url: url.to_owned(), secret: secret.as_bytes().to_vec(), standard_key })
    }

    /// The value of `X-Qfrefund-Signature` for `body` (the form before Standard Webhooks, kept
    /// for one version).
    pub fn signature(&self, body: &[u8]) -> String {
        format!("sha256={}", hex(&hmac_sha256(&self.secret, body)))
    }

    /// The value of `webhook-signature` for delivery `id` sent at `timestamp` (seconds since
    /// the epoch): `v1,` and the base64 HMAC-SHA256 of `<id>.<timestamp>.<body>`.
    pub fn standard_signature(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        use base64::Engine;
        let mut signed = format!("{id}.{timestamp}.").into_bytes();
        signed.extend_from_slice(body);
        format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(hmac_sha256(&self.standard_key, &signed)))
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

impl WebhookPolicy {
    /// Refuses a policy that could never deliver, or would hand a live delivery to a second worker.
    pub fn validate(&self) -> Result<(), String> {
        if self.timeout.is_zero() || self.retry_base.is_zero() || self.max_attempts == 0 {
            return Err("webhook_timeout_ms, webhook_retry_base_ms and webhook_max_attempts must be more than 0".into());
        }
        if self.retry_cap < self.retry_base {
            return Err(format!(
                "webhook_retry_cap_ms ({}) must be at least webhook_retry_base_ms ({})",
                self.retry_cap.as_millis(),
                self.retry_base.as_millis()
            ));
        }
        if self.claim_idle <= self.timeout {
            return Err(format!(
                "webhook_claim_idle_ms ({}) must exceed webhook_timeout_ms ({}): a delivery in flight would be taken over by another worker \
                 at once (receivers de-duplicate on webhook-id, but every slow delivery would be sent twice)",
                self.claim_idle.as_millis(),
                self.timeout.as_millis()
            ));
        }
        Ok(())
    }
}

/// HMAC-SHA256 (RFC 2104), by the `hmac` crate.
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    use hmac::{KeyInit, Mac};
    // Any key length is valid for HMAC (longer keys are hashed first), so this cannot fail.
    let Ok(mut mac) = hmac::Hmac::<Sha256>::new_from_slice(key) else { unreachable!("HMAC takes keys of any length") };
    mac.update(msg);
    mac.finalize().into_bytes().into()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The id a receiver de-duplicates on (`X-Qfrefund-Event-Id` and the body's `id`): the same for
/// every announcement of one outcome, whichever stream entry carried it.
///
/// Derived from the merchant, the out_trade_no and the final state, and deliberately not from the
/// stream id or the fence: after a Redis rollback loses a final transition, the refund is settled
/// again — as a new stream entry and, since a takeover claims with a new fence, usually under
/// another fence — and that is still the same outcome. It cannot collide with another outcome: a
/// final state is terminal (no script moves a refund out of one) and an out_trade_no names one
/// refund for ever (enqueue is idempotent on it, records are never purged). Should a rollback end
/// the refund in a *different* final state, that is a different id: a different outcome.
pub fn event_id(merchant: &str, out_trade_no: &str, state: &str) -> String {
    let digest = Sha256::new()
        .chain_update(b"qfrefund webhook event\0")
        .chain_update(merchant.as_bytes())
        .chain_update(b"\0")
        .chain_update(out_trade_no.as_bytes())
        .chain_update(b"\0")
        .chain_update(state.as_bytes())
        .finalize();
    format!("evt_{}", hex(&digest[..16]))
}

/// Whether an outcome-stream entry is announced: a final outcome (`refund.succeeded`,
/// `refund.failed`, `refund.cancelled`), or a refund entering `needs_review`
/// (`refund.needs_review`: a person must look at it).
pub fn announced(e: &Event) -> bool {
    e.is_final() || e.state == ledger::State::NeedsReview.as_str()
}

/// The id of an announcement ([`event_id`]). A refund may enter `needs_review` more than once
/// (an operator retries it, it comes back): each stay is its own announcement, told apart by the
/// fence of the claim that moved it there (every way into `needs_review` is a claim's, and a
/// refund leaves it only by an operator's action and a new claim).
pub fn delivery_id(e: &Event) -> String {
    if e.state == ledger::State::NeedsReview.as_str() {
        event_id(&e.merchant, &e.out_trade_no, &format!("needs_review\0{}", e.fence))
    } else {
        event_id(&e.merchant, &e.out_trade_no, &e.state)
    }
}

/// The JSON body of a webhook: the outcome event (its `id` the stable [`event_id`]), with its
/// type and the stream entry it came from (`stream_id`); numbers (`txamt`, `fence`, `at`, …) are
/// JSON integers, as [`Event`] serialises them.
pub fn body_of(e: &Event, stream_id: &str) -> Vec<u8> {
    let mut v = serde_json::to_value(e).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert("type".into(), serde_json::Value::String(format!("refund.{}", e.state)));
        o.insert("stream_id".into(), serde_json::Value::String(stream_id.to_owned()));
    }
    serde_json::to_vec(&v).unwrap_or_default()
}

/// Counts for metrics.
#[derive(Debug, Default)]
pub struct WebhookCounters {
    pub delivered: std::sync::atomic::AtomicU64,
    pub failed_attempts: std::sync::atomic::AtomicU64,
    pub gave_up: std::sync::atomic::AtomicU64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_that_would_send_a_delivery_twice_or_never_is_refused() {
        assert_eq!(WebhookPolicy::default().validate(), Ok(()));
        let taken_over = WebhookPolicy { claim_idle: Duration::from_secs(5), ..WebhookPolicy::default() };
        assert!(taken_over.validate().unwrap_err().contains("webhook_claim_idle_ms"));
        let never = WebhookPolicy { max_attempts: 0, ..WebhookPolicy::default() };
        assert!(never.validate().unwrap_err().contains("webhook_max_attempts"));
        let backwards = WebhookPolicy { retry_cap: Duration::from_secs(1), ..WebhookPolicy::default() };
        assert!(backwards.validate().unwrap_err().contains("webhook_retry_cap_ms"));
    }

    /// The Standard Webhooks specification's own test vector: what its libraries accept.
    #[test]
    fn standard_signatures_match_the_published_test_vector() {
        let hook = Webhook::new("https://example.test/hook", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = hook.standard_signature("msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, br#"{"test": 2432232314}"#);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        // A secret not written as `whsec_<base64>` is the key itself.
        let plain = Webhook::new("https://example.test/hook", "a-secret-of-24-characters").unwrap();
        assert_ne!(plain.standard_signature("msg_1", 1, b"{}"), hook.standard_signature("msg_1", 1, b"{}"));
        assert!(plain.standard_signature("msg_1", 1, b"{}").starts_with("v1,"));
    }

    /// RFC 4231 test cases 1 and 6 (a key longer than the block).
    #[test]
    fn hmac_sha256_matches_rfc_4231() {
        let t1 = hmac_sha256(&[0x0b; 20], b"Hi There");
        assert_eq!(hex(&t1), "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
        let t6 = hmac_sha256(&[0xaa; 131], b"Test Using Larger Than Block-Size Key - Hash Key First");
        assert_eq!(hex(&t6), "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
    }

    #[test]
    fn the_event_id_names_the_outcome_not_the_stream_entry() {
        let id = event_id("shop", "RF-1", "succeeded");
        assert_eq!(id, event_id("shop", "RF-1", "succeeded"));
        assert!(id.starts_with("evt_") && id.len() == 36, "{id}");
        for other in [
            event_id("shop", "RF-1", "failed"),
            event_id("shop", "RF-2", "succeeded"),
            event_id("mall", "RF-1", "succeeded"),
        ] {
            assert_ne!(id, other);
        }
        // No field boundary can be shifted into another outcome's id.
        assert_ne!(event_id("a", "bc", "succeeded"), event_id("ab", "c", "succeeded"));
    }

    #[test]
    fn each_stay_in_needs_review_is_its_own_announcement() {
        let at = |state: &str, fence: &str| {
            let fields = [("merchant", "shop"), ("out_trade_no", "RF-1"), ("state", state), ("fence", fence)];
            Event::from_stream("1-0".into(), fields.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
        };
        assert!(announced(&at("needs_review", "7")) && announced(&at("failed", "7")));
        assert!(!announced(&at("pending", "7")) && !announced(&at("queued", "0")));
        assert_eq!(delivery_id(&at("needs_review", "7")), delivery_id(&at("needs_review", "7")));
        assert_ne!(delivery_id(&at("needs_review", "7")), delivery_id(&at("needs_review", "9")));
        // A final outcome's id does not depend on the fence (a replay may settle it under another).
        assert_eq!(delivery_id(&at("succeeded", "7")), delivery_id(&at("succeeded", "9")));
        assert_eq!(delivery_id(&at("succeeded", "7")), event_id("shop", "RF-1", "succeeded"));
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let w = Webhook::new("https://shop.example/hooks", "whsec-0123456789abcdef").unwrap();
        assert!(!format!("{w:?}").contains("whsec"));
        assert!(Webhook::new("ftp://x", "whsec-0123456789abcdef").is_err());
        assert!(Webhook::new("https://x", "short").is_err());
    }
}
