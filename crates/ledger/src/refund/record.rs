//! The refund record: one Redis hash per (merchant, `out_trade_no`), and its public JSON form.

use std::collections::HashMap;

use serde::Serialize;

use crate::refund::state::State;

/// Everything the ledger knows about one refund.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Record {
    /// Its id inside its shard (see [`crate::refund::placement::refund_id`]): the suffix of its
    /// record key and the member of every index.
    #[serde(skip)]
    pub id: String,
    // The request, as enqueued (immutable).
    pub out_trade_no: String,
    pub syssn: String,
    pub txamt: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub orig_txamt: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mchid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub udid: Option<String>,
    pub merchant: String,
    /// The producer's W3C trace context, when it gave one (see `NewRefund::traceparent`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// Hash of the request: a second enqueue with other fields is a conflict, not a new refund.
    #[serde(skip)]
    pub payload_hash: String,

    // Where it stands.
    pub state: State,
    /// Bumped by every claim; a write carrying an older fence is refused.
    pub fence: u64,
    #[serde(skip)]
    pub lease_owner: Option<String>,
    #[serde(skip)]
    pub lease_until: i64,
    pub submits: u32,
    pub enquiries: u32,
    /// Retryable codes answered so far (bounded by the resubmit budget).
    pub retries: u32,
    /// Consecutive enquiries that did not find it since the last submit.
    pub not_found: u32,
    pub created_at: i64,
    /// When an operator last retried it: the maximum age counts from the later of the two.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retried_at: Option<i64>,
    pub updated_at: i64,
    #[serde(skip_serializing_if = "is_zero")]
    pub next_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub submitted_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_submit_at: Option<i64>,
    /// `txdtm` of the first submit; every resend and enquiry window is anchored on it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub txdtm: Option<String>,

    // QFPay's last word.
    pub respcd: Option<String>,
    pub resperr: Option<String>,
    pub refund_syssn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sysdtm: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// `respcd` of the last submit answer (a duplicate code changes what "not found" means).
    #[serde(skip)]
    pub submit_code: Option<String>,
    /// A final-failure code that may be our own earlier success: enquire once before failing.
    #[serde(skip)]
    pub reconcile_code: Option<String>,
    /// A code outside the catalogue: one enquiry round, then a person.
    #[serde(skip)]
    pub unknown_code: Option<String>,
    /// An earlier submit may have taken effect without our seeing it (its outcome was unknown, or
    /// it was only "not found" before a resend): a refusal now does not prove there is no refund.
    #[serde(skip)]
    pub uncertain: bool,
    /// The refund was refused as "transaction does not exist" after an unseen attempt: the next
    /// enquiry asks QFPay for the payment itself (`syssn`), not for the refund. A payment QFPay
    /// does not know cannot have been refunded.
    #[serde(skip)]
    pub payment_check: bool,
    /// The operator behind the last manual action, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
    /// When the step a worker now holds was due (ms; set by each claim): how late it was picked up.
    #[serde(skip)]
    pub due_at: Option<i64>,
    /// No resend before this (ms): the wait an operator's "enquire now" cut short (a retryable
    /// code's hold, say), kept so that a "not found" from the earlier enquiry still resends only
    /// when the wait would have ended.
    #[serde(skip)]
    pub resend_not_before: Option<i64>,
    /// Archived and removed from Redis: this is what its tombstone and the request kept (see
    /// `store::retention`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub archived: bool,
    /// Enqueued fresh and not yet settled (see `store::fresh`): not in the created index, its
    /// timeline not begun, perhaps not under its payment yet.
    #[serde(skip)]
    pub fresh: bool,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// A hash that is not a record: a field is missing or unreadable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("refund record {key}: field {field}: {problem}")]
pub struct CorruptRecord {
    pub key: String,
    pub field: &'static str,
    pub problem: String,
}

impl Record {
    /// The record `enqueue` creates for `refund` at `now` (ms): queued, due at once.
    pub fn queued(refund: &crate::NewRefund, now: i64) -> Self {
        Self {
            id: crate::refund::placement::refund_id(refund.merchant(), &refund.out_trade_no),
            out_trade_no: refund.out_trade_no.clone(),
            syssn: refund.syssn.clone(),
            txamt: refund.txamt,
            orig_txamt: refund.orig_txamt,
            mchid: refund.mchid.clone(),
            udid: refund.udid.clone(),
            merchant: refund.merchant().to_owned(),
            traceparent: refund.traceparent.clone().filter(|v| crate::refund::request::valid_traceparent(v)),
            payload_hash: refund.payload_hash(),
            state: State::Queued,
            fence: 0,
            lease_owner: None,
            lease_until: 0,
            submits: 0,
            enquiries: 0,
            retries: 0,
            not_found: 0,
            created_at: now,
            retried_at: None,
            updated_at: now,
            next_at: now,
            submitted_at: None,
            last_submit_at: None,
            txdtm: None,
            respcd: None,
            resperr: None,
            refund_syssn: None,
            sysdtm: None,
            reason: None,
            last_error: None,
            submit_code: None,
            reconcile_code: None,
            unknown_code: None,
            uncertain: false,
            payment_check: false,
            operator: None,
            due_at: None,
            resend_not_before: None,
            archived: false,
            fresh: false,
        }
    }

    /// The request this record was made from (what its hash identifies).
    pub fn request(&self) -> crate::NewRefund {
        crate::NewRefund {
            syssn: self.syssn.clone(),
            out_trade_no: self.out_trade_no.clone(),
            txamt: self.txamt,
            orig_txamt: self.orig_txamt,
            mchid: self.mchid.clone(),
            udid: self.udid.clone(),
            merchant: Some(self.merchant.clone()),
            traceparent: self.traceparent.clone(),
        }
    }

    /// Whether `payload_hash` (a request's full hash, see `NewRefund::payload_hash`) is the
    /// request this record was made from: a fresh record (see `store::fresh`) keeps the hash's
    /// first 32 hex digits.
    pub fn same_payload(&self, payload_hash: &str) -> bool {
        self.payload_hash.len() >= 32 && payload_hash.starts_with(self.payload_hash.as_str())
    }

    /// Reads a record from its hash fields.
    pub fn from_hash(key: &str, h: &HashMap<String, String>) -> Result<Self, CorruptRecord> {
        let bad = |field: &'static str, problem: &str| CorruptRecord {
            key: key.to_owned(),
            field,
            problem: problem.to_owned(),
        };
        let text = |f: &'static str| h.get(f).filter(|v| !v.is_empty()).cloned();
        let req = |f: &'static str| text(f).ok_or_else(|| bad(f, "missing"));
        let num = |f: &'static str| -> Result<i64, CorruptRecord> {
            h.get(f).filter(|v| !v.is_empty()).map_or(Ok(0), |v| v.parse().map_err(|_| bad(f, "not a number")))
        };
        let count = |f: &'static str| num(f).map(|v| v.clamp(0, i64::from(u32::MAX)) as u32);
        let opt_num = |f: &'static str| num(f).map(|v| (v != 0).then_some(v));
        let out_trade_no = req("out_trade_no")?;
        // The key ends in `:r:<id>`; a hash read from anywhere else is named by its fields.
        let id = key.split_once("}:r:").map(|(_, id)| id.to_owned());
        let merchant = req("merchant")?;
        let created_at = num("created_at")?;
        let fresh = text("fresh").is_some();
        Ok(Self {
            id: id.unwrap_or_else(|| crate::refund::placement::refund_id(&merchant, &out_trade_no)),
            out_trade_no,
            syssn: req("syssn")?,
            txamt: req("txamt")?.parse().map_err(|_| bad("txamt", "not an amount"))?,
            orig_txamt: text("orig_txamt")
                .map(|v| v.parse().map_err(|_| bad("orig_txamt", "not an amount")))
                .transpose()?,
            mchid: text("mchid"),
            udid: text("udid"),
            merchant,
            traceparent: text("traceparent"),
            payload_hash: req("payload_hash")?,
            state: req("state")?.parse().map_err(|_| bad("state", "unknown state"))?,
            fence: num("fence")?.max(0) as u64,
            lease_owner: text("lease_owner"),
            lease_until: num("lease_until")?,
            submits: count("submits")?,
            enquiries: count("enquiries")?,
            retries: count("retries")?,
            not_found: count("not_found")?,
            created_at,
            retried_at: opt_num("retried_at")?,
            // A fresh record has neither: it was due, and last changed, when it was created.
            updated_at: if h.contains_key("updated_at") { num("updated_at")? } else { created_at },
            next_at: if fresh && !h.contains_key("next_at") { created_at } else { num("next_at")? },
            submitted_at: opt_num("submitted_at")?,
            last_submit_at: opt_num("last_submit_at")?,
            txdtm: text("txdtm"),
            respcd: text("respcd"),
            resperr: text("resperr"),
            refund_syssn: text("refund_syssn"),
            sysdtm: text("sysdtm"),
            reason: text("reason"),
            last_error: text("last_error"),
            submit_code: text("submit_code"),
            reconcile_code: text("reconcile_code"),
            unknown_code: text("unknown_code"),
            uncertain: text("uncertain").is_some_and(|v| v == "1"),
            payment_check: text("payment_check").is_some_and(|v| v == "1"),
            operator: text("operator"),
            due_at: opt_num("due_at")?,
            resend_not_before: opt_num("resend_not_before")?,
            archived: false,
            fresh,
        })
    }

    /// What a tombstone alone tells of an archived refund (where its archive cannot be read):
    /// its merchant, out_trade_no, final state and respcd; the request's fields are left empty.
    pub fn from_tombstone(tomb: &crate::refund::tombstone::Tombstone) -> Self {
        let mut r = Self::queued(&crate::NewRefund::new("", &tomb.out_trade_no, 0), 0);
        r.id = crate::refund::placement::refund_id(&tomb.merchant, &tomb.out_trade_no);
        r.merchant = tomb.merchant.clone();
        r.payload_hash = String::new();
        (r.created_at, r.updated_at, r.next_at) = (0, 0, 0);
        r.state = tomb.state;
        r.respcd = tomb.respcd.clone();
        r.archived = true;
        r
    }

    /// The record an archived refund answers with when the same request comes again: the
    /// request itself, and the final outcome its tombstone keeps.
    pub fn archived(refund: &crate::NewRefund, tomb: &crate::refund::tombstone::Tombstone) -> Self {
        let mut r = Self::queued(refund, 0);
        r.state = tomb.state;
        r.respcd = tomb.respcd.clone();
        r.next_at = 0;
        r.archived = true;
        r
    }

    /// Where the maximum age is counted from.
    pub fn age_from(&self) -> i64 {
        self.created_at.max(self.retried_at.unwrap_or(0))
    }
}
