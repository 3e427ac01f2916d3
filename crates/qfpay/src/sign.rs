//! Signatures (API §3).
//!
//! Requests: parameters sorted by name in byte order, `name=value` joined with `&`, the client key
//! appended, the UTF-8 bytes hashed, upper-case hex. Values are signed raw (not URL-encoded); the
//! form body is encoded separately. Empty values are left out — [`crate::Params`] never holds one.
//!
//! Notifications: the hash of the raw body bytes followed by the key (no parsing, no sorting).

use md5::{Digest, Md5};
use sha2::Sha256;
use std::fmt;
use std::str::FromStr;

use crate::params::Params;
use crate::secret::ClientKey;

/// Digest used for `X-QF-SIGN`. MD5 is QFPay's default; SHA-256 is sent with `X-QF-SIGNTYPE: SHA256`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SignAlg {
    #[default]
    Md5,
    Sha256,
}

impl SignAlg {
    /// The `X-QF-SIGNTYPE` header value.
    pub fn header_value(self) -> &'static str {
        match self {
            SignAlg::Md5 => "MD5",
            SignAlg::Sha256 => "SHA256",
        }
    }

    fn digest_hex_upper(self, parts: &[&[u8]]) -> String {
        match self {
            SignAlg::Md5 => {
                let mut h = Md5::new();
                parts.iter().for_each(|p| h.update(p));
                hex_upper(&h.finalize())
            }
            SignAlg::Sha256 => {
                let mut h = Sha256::new();
                parts.iter().for_each(|p| h.update(p));
                hex_upper(&h.finalize())
            }
        }
    }
}

impl fmt::Display for SignAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.header_value())
    }
}

/// An unknown `X-QF-SIGNTYPE` / configuration value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown signature algorithm {0:?}: expected MD5 or SHA256")]
pub struct UnknownSignAlg(pub String);

impl FromStr for SignAlg {
    type Err = UnknownSignAlg;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_uppercase().as_str() {
            "MD5" => Ok(SignAlg::Md5),
            "SHA256" | "SHA-256" => Ok(SignAlg::Sha256),
            _ => Err(UnknownSignAlg(s.to_owned())),
        }
    }
}

/// What to do with empty values. QFPay's current rule (and the only one [`Params`] knows) is
/// [`EmptyValues::Omit`]; [`EmptyValues::Include`] reproduces the legacy (2017–2019) samples and
/// exists so that difference stays pinned down by a test vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmptyValues {
    Omit,
    Include,
}

/// The string that is hashed, *without* the key: `a=1&b=2`. Useful in diagnostics, because it
/// contains no secret.
pub fn signing_string(params: &Params) -> String {
    signing_string_of(params.iter(), EmptyValues::Omit)
}

/// [`signing_string`] over any pairs; they are sorted here by key, in byte order.
pub fn signing_string_of<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>, empty: EmptyValues) -> String {
    let mut pairs: Vec<(&str, &str)> =
        pairs.into_iter().filter(|(_, v)| empty == EmptyValues::Include || !v.is_empty()).collect();
    pairs.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut out = String::new();
    for (i, (k, v)) in pairs.into_iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out
}

/// The request signature for `X-QF-SIGN` (API §3.1).
pub fn sign(params: &Params, key: &ClientKey, alg: SignAlg) -> String {
    sign_string(&signing_string(params), key, alg)
}

/// Signs an already built signing string (see [`signing_string_of`]).
pub fn sign_string(signing_string: &str, key: &ClientKey, alg: SignAlg) -> String {
    alg.digest_hex_upper(&[signing_string.as_bytes(), key.expose().as_bytes()])
}

/// Checks a request signature as QFPay's server would (hex compared case-insensitively).
pub fn verify(params: &Params, key: &ClientKey, alg: SignAlg, signature: &str) -> bool {
    eq_ignore_case_ct(&sign(params, key, alg), signature.trim())
}

/// The signature QFPay puts on an asynchronous notification: hash of `raw body ++ key` (API §3.3).
pub fn notification_signature(raw_body: &[u8], key: &ClientKey, alg: SignAlg) -> String {
    alg.digest_hex_upper(&[raw_body, key.expose().as_bytes()])
}

/// Verifies a notification over the exact bytes received. Never parse and re-serialise first.
pub fn verify_notification(raw_body: &[u8], key: &ClientKey, alg: SignAlg, signature: &str) -> bool {
    eq_ignore_case_ct(&notification_signature(raw_body, key, alg), signature.trim())
}

fn hex_upper(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 0xf) as usize] as char);
    }
    s
}

/// Case-insensitive comparison whose time does not depend on where the strings differ.
fn eq_ignore_case_ct(a: &str, b: &str) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x.to_ascii_uppercase() ^ y.to_ascii_uppercase())) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        let mut p = Params::new();
        for (k, v) in pairs {
            p.insert(*k, *v);
        }
        p
    }

    #[test]
    fn sorts_by_key_not_by_pair_string() {
        // "a1=x" < "a=x" as strings ('1' < '='), but key "a" < "a1".
        let p = params(&[("a1", "x"), ("a", "y")]);
        assert_eq!(signing_string(&p), "a=y&a1=x");
    }

    #[test]
    fn order_of_insertion_does_not_matter() {
        let key = ClientKey::new("k");
        let a = params(&[("b", "2"), ("a", "1"), ("c", "3")]);
        let b = params(&[("c", "3"), ("b", "2"), ("a", "1")]);
        assert_eq!(sign(&a, &key, SignAlg::Md5), sign(&b, &key, SignAlg::Md5));
    }

    #[test]
    fn verify_accepts_lower_case_hex_and_rejects_other_keys() {
        let p = params(&[("txamt", "100")]);
        let key = ClientKey::new("abc");
        let s = sign(&p, &key, SignAlg::Md5);
        assert!(verify(&p, &key, SignAlg::Md5, &s.to_lowercase()));
        assert!(!verify(&p, &ClientKey::new("abd"), SignAlg::Md5, &s));
        assert!(!verify(&p, &key, SignAlg::Sha256, &s));
        assert!(!verify(&p, &key, SignAlg::Md5, ""));
    }

    #[test]
    fn sign_alg_parses_header_values() {
        assert_eq!("md5".parse::<SignAlg>(), Ok(SignAlg::Md5));
        assert_eq!("SHA256".parse::<SignAlg>(), Ok(SignAlg::Sha256));
        assert!("sha1".parse::<SignAlg>().is_err());
    }
}
