//! What producers enqueue, and how it is checked before anything is written.

use qfpay::FieldError;
use qfpay::request::{
    MAX_TXAMT, validate_id, validate_mchid, validate_out_trade_no, validate_syssn, validate_txamt, validate_udid,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The merchant used when a request names none.
pub const DEFAULT_MERCHANT: &str = "default";

/// A refund request as a producer sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewRefund {
    /// The original payment's QFPay `syssn`.
    pub syssn: String,
    /// The merchant's id for this refund: the idempotency key.
    pub out_trade_no: String,
    /// Refund amount, minor units.
    pub txamt: u64,
    /// What the payment was for, minor units, when the producer knows it (else learned by enquiry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orig_txamt: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mchid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udid: Option<String>,
    /// Which configured merchant's credentials to use (default: `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merchant: Option<String>,
    /// The producer's W3C trace context (`traceparent`), kept with the refund so that the
    /// workers' spans for it join the producer's trace. Not part of the request: the same
    /// request under another trace is a duplicate, and keeps the first one's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

impl NewRefund {
    /// A refund of `txamt` of payment `syssn`, known as `out_trade_no`.
    pub fn new(syssn: &str, out_trade_no: &str, txamt: u64) -> Self {
        Self {
            syssn: syssn.to_owned(),
            out_trade_no: out_trade_no.to_owned(),
            txamt,
            orig_txamt: None,
            mchid: None,
            udid: None,
            traceparent: None,
            merchant: None,
        }
    }

    /// Blank optional fields mean "none".
    pub fn normalised(mut self) -> Self {
        for f in [&mut self.mchid, &mut self.udid, &mut self.merchant] {
            if f.as_deref().is_some_and(|v| v.trim().is_empty()) {
                *f = None;
            }
        }
        self
    }

    pub fn merchant(&self) -> &str {
        self.merchant.as_deref().unwrap_or(DEFAULT_MERCHANT)
    }

    /// Every rule a request must meet; the error names the (first) field in error.
    pub fn validate(&self) -> Result<(), FieldError> {
        match self.problems().into_iter().next() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Every field in error, each with what is wrong with it (what an API answers with).
    pub fn problems(&self) -> Vec<FieldError> {
        let mut out = Vec::new();
        let mut check = |r: Result<(), FieldError>| {
            if let Err(e) = r {
                out.push(e);
            }
        };
        check(validate_syssn(&self.syssn));
        check(validate_out_trade_no(&self.out_trade_no));
        check(validate_txamt("txamt", self.txamt));
        if let Some(paid) = self.orig_txamt {
            check(validate_txamt("orig_txamt", paid));
            if self.txamt > paid {
                check(Err(FieldError::new(
                    "txamt",
                    format!("refund of {} exceeds the payment's amount orig_txamt {paid}", self.txamt),
                )));
            }
        }
        if let Some(m) = &self.mchid {
            check(validate_mchid(m));
        }
        if let Some(u) = &self.udid {
            check(validate_udid(u));
        }
        if let Some(m) = &self.merchant {
            check(validate_id("merchant", m, 64));
        }
        debug_assert!(!out.is_empty() || self.txamt <= MAX_TXAMT);
        out
    }

    /// Identifies the payload: equal requests hash equally, any difference changes it.
    pub fn payload_hash(&self) -> String {
        let mut h = Sha256::new();
        for part in [
            self.syssn.as_str(),
            self.out_trade_no.as_str(),
            &self.txamt.to_string(),
            &self.orig_txamt.map(|v| v.to_string()).unwrap_or_default(),
            self.mchid.as_deref().unwrap_or(""),
            self.udid.as_deref().unwrap_or(""),
            self.merchant(),
        ] {
            h.update(part.as_bytes());
            h.update([0x1f]);
        }
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::with_capacity(64);
        for b in h.finalize() {
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 0xf)] as char);
        }
        out
    }

    /// The record fields it is stored as (a malformed `traceparent` is left out: it is no part of
    /// the request, and a trace is not worth refusing a refund for).
    pub(crate) fn fields(&self) -> Vec<(&'static str, String)> {
        let mut f = vec![
            ("out_trade_no", self.out_trade_no.clone()),
            ("syssn", self.syssn.clone()),
            ("txamt", self.txamt.to_string()),
            ("merchant", self.merchant().to_owned()),
        ];
        if let Some(v) = self.orig_txamt {
            f.push(("orig_txamt", v.to_string()));
        }
        if let Some(v) = &self.mchid {
            f.push(("mchid", v.clone()));
        }
        if let Some(v) = &self.udid {
            f.push(("udid", v.clone()));
        }
        if let Some(v) = self.traceparent.as_ref().filter(|v| valid_traceparent(v)) {
            f.push(("traceparent", v.clone()));
        }
        f
    }

    /// The fields in which `self` differs from an existing record: what a conflict reports.
    pub fn differences(&self, existing: &crate::Record) -> Vec<String> {
        let mut d = Vec::new();
        let mut cmp = |field: &str, ours: String, theirs: String| {
            if ours != theirs {
                d.push(format!("{field}: existing {theirs:?}, requested {ours:?}"));
            }
        };
        cmp("syssn", self.syssn.clone(), existing.syssn.clone());
        cmp("txamt", self.txamt.to_string(), existing.txamt.to_string());
        let opt = |v: Option<u64>| v.map(|x| x.to_string()).unwrap_or_default();
        cmp("orig_txamt", opt(self.orig_txamt), opt(existing.orig_txamt));
        cmp("mchid", self.mchid.clone().unwrap_or_default(), existing.mchid.clone().unwrap_or_default());
        cmp("udid", self.udid.clone().unwrap_or_default(), existing.udid.clone().unwrap_or_default());
        cmp("merchant", self.merchant().to_owned(), existing.merchant.clone());
        d
    }
}

/// Whether `v` is a W3C `traceparent` (version 00): `00-<32 hex>-<16 hex>-<2 hex>`, neither id
/// all zeros.
pub fn valid_traceparent(v: &str) -> bool {
    let parts: Vec<&str> = v.split('-').collect();
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let nonzero = |s: &str| s.bytes().any(|b| b != b'0');
    parts.len() == 4
        && parts[0] == "00"
        && hex(parts[1], 32)
        && nonzero(parts[1])
        && hex(parts[2], 16)
        && nonzero(parts[2])
        && hex(parts[3], 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_w3c_traceparent_is_kept() {
        assert!(valid_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        ] {
            assert!(!valid_traceparent(bad), "{bad}");
        }
        let mut r = NewRefund::new("1", "RF-1", 5);
        r.traceparent = Some("nonsense".into());
        assert!(!r.fields().iter().any(|(k, _)| *k == "traceparent"));
        assert_eq!(r.payload_hash(), NewRefund::new("1", "RF-1", 5).payload_hash(), "not part of the request");
    }

    #[test]
    fn invalid_requests_name_their_field() {
        let ok = NewRefund::new("123", "RF1", 100);
        assert!(ok.validate().is_ok());
        let cases = [
            (NewRefund { syssn: String::new(), ..ok.clone() }, "syssn"),
            (NewRefund { out_trade_no: "RF 1".into(), ..ok.clone() }, "out_trade_no"),
            (NewRefund { txamt: 0, ..ok.clone() }, "txamt"),
            (NewRefund { orig_txamt: Some(99), ..ok.clone() }, "txamt"),
            (NewRefund { orig_txamt: Some(0), ..ok.clone() }, "orig_txamt"),
            (NewRefund { mchid: Some("x".repeat(17)), ..ok.clone() }, "mchid"),
            (NewRefund { merchant: Some("shop one".into()), ..ok.clone() }, "merchant"),
        ];
        for (r, field) in cases {
            assert_eq!(r.validate().unwrap_err().field, field);
        }
    }

    #[test]
    fn the_hash_changes_with_every_field_and_blank_means_none() {
        let a = NewRefund::new("123", "RF1", 100);
        let variants = [
            NewRefund { txamt: 101, ..a.clone() },
            NewRefund { orig_txamt: Some(100), ..a.clone() },
            NewRefund { mchid: Some("M".into()), ..a.clone() },
            NewRefund { udid: Some("U".into()), ..a.clone() },
            NewRefund { merchant: Some("other".into()), ..a.clone() },
            NewRefund { syssn: "124".into(), ..a.clone() },
        ];
        for v in variants {
            assert_ne!(v.payload_hash(), a.payload_hash(), "{v:?}");
        }
        let blank = NewRefund { mchid: Some(" ".into()), merchant: Some("default".into()), ..a.clone() }.normalised();
        assert_eq!(blank.payload_hash(), a.payload_hash());
    }
}
