//! What one request to QFPay was, kept for a dispute: everything that was sent except the key
//! (the parameters and the signature they were sent with), and what came back (the HTTP status,
//! the raw body, size-capped), with the times. Built by [`crate::Client`]'s `*_evidenced` calls.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The most of an answer's body kept (bytes; QFPay's answers are a few hundred).
pub const BODY_CAP: usize = 1024;

/// One request and its answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// `refund` or `query`.
    pub call: String,
    /// When it was sent (ms since the epoch, this host's clock).
    pub sent_at: i64,
    /// How long until the answer (or the failure), ms.
    pub took_ms: u64,
    /// The form parameters sent, exactly (the key is never one of them).
    pub params: BTreeMap<String, String>,
    /// The SHA-256 (hex) of the `X-QF-SIGN` header sent, and the signature's algorithm: enough
    /// to match the request against QFPay's records, but not the signature itself, which with
    /// the parameters beside it would let anyone who reads Redis or the archive send the same
    /// signed request again.
    pub sign_sha256: String,
    pub sign_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    /// The answer's body, its first [`BODY_CAP`] bytes (invalid UTF-8 replaced).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub body_truncated: bool,
    /// Why there was no usable answer, if there was none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The worker that sent it could not record its answer: another worker had taken the refund
    /// over (the first one's lease ran out while it waited). The refund's outcome is the other
    /// worker's, from QFPay's records; this is what the first request was and got.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fenced_off: bool,
}

impl Evidence {
    /// Keeps `body` (capped) as the answer's.
    /// NUL bytes become U+FFFD (no database text column takes them), and a cut never splits a
    /// character.
    pub fn set_body(&mut self, body: &[u8]) {
        let mut text = String::from_utf8_lossy(body).replace('\0', "\u{fffd}");
        self.body_truncated = text.len() > BODY_CAP;
        if self.body_truncated {
            let mut cut = BODY_CAP;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
        }
        self.body = Some(text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_body_is_capped_and_said_to_be() {
        let mut e = Evidence {
            call: "refund".into(),
            sent_at: 1,
            took_ms: 2,
            params: BTreeMap::new(),
            sign_sha256: "S".into(),
            sign_type: "MD5".into(),
            http_status: Some(200),
            body: None,
            body_truncated: false,
            error: None,
            fenced_off: false,
        };
        e.set_body(&vec![b'x'; BODY_CAP + 10]);
        assert_eq!((e.body.as_ref().map(String::len), e.body_truncated), (Some(BODY_CAP), true));
        e.set_body(b"{\"respcd\":\"0000\"}");
        assert!(!e.body_truncated);
        let mut long = vec![b'x'; BODY_CAP - 1];
        long.extend("处".as_bytes());
        e.set_body(&long);
        assert_eq!(e.body.as_ref().map(String::len), Some(BODY_CAP - 1), "never half a character");
        e.set_body(b"a\0b");
        assert_eq!(e.body.as_deref(), Some("a\u{fffd}b"));
    }
}
