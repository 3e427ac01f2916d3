//! The QFPay Open API (`/trade/v1/*`) as a refund worker needs it. Pure protocol: no Redis, no queue.
//!
//! # Layout
//! - [`secret`]: [`ClientKey`], the merchant's signing key, which can be used but never shown.
//! - [`sign`]: request signatures (API §3.1, MD5 or SHA-256) and the notification check (API §3.3).
//! - [`params`]: [`Params`], the one place where "empty values are never sent and never signed" lives.
//! - [`time`]: [`Txdtm`], QFPay's `YYYY-MM-DD hh:mm:ss` timestamps, and the 23:30–00:30 refund window.
//! - [`request`]: validated [`RefundRequest`] and [`EnquiryRequest`]; invalid input is a
//!   [`FieldError`] naming the field and the rule it broke.
//! - [`response`]: tolerant [`RefundResponse`] / [`EnquiryResponse`] (every field optional,
//!   numbers-or-strings, `null`, unknown fields ignored) and how an enquiry answers for one refund.
//! - [`respcd`]: the whole `respcd` catalogue (API §7) as data, and [`classify`].
//! - [`client`]: [`Client`], whose [`ClientError`] says whether a request was provably *not sent*,
//!   its outcome is *unknown*, or it was *rate limited*; [`evidence`]: what a request was and
//!   what came back, for disputes.
//!
//! Section numbers (API §N) refer to `docs/qfpay-api.md` (QFPay's refund and enquiry API as
//! this crate reads it).

pub mod call;
#[cfg(feature = "client")]
pub mod client;
pub mod evidence;
pub mod params;
pub mod request;
pub mod respcd;
pub mod response;
pub mod secret;
pub mod sign;
pub mod time;

pub use call::ClientError;
#[cfg(feature = "client")]
pub use client::{Client, ClientConfig, Credentials};
pub use evidence::Evidence;
pub use params::Params;
pub use request::{EnquiryRequest, FieldError, RefundRequest};
pub use respcd::{Class, CodeInfo, classify};
pub use response::{EnquiryRecord, EnquiryResponse, RefundLookup, RefundResponse};
pub use secret::ClientKey;
pub use sign::SignAlg;
pub use time::Txdtm;
