//! How a call to QFPay can fail, as the decisions need it (pure: the HTTP client that produces
//! these is [`crate::client`], behind the `client` feature).

use std::time::Duration;

/// Why a call did not produce a business answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Provably not sent: no connection was established (refused, DNS, TLS handshake, connect
    /// timeout). Safe to send again.
    #[error("request not sent: {reason}")]
    NotSent { reason: String },
    /// Sent (at least partly) and no usable answer: timeout after sending, reset, 5xx or another
    /// unexpected status, a body that is not a QFPay answer. QFPay may have acted: enquire.
    #[error("outcome unknown{}: {reason}", status.map(|s| format!(" (HTTP {s})")).unwrap_or_default())]
    OutcomeUnknown { reason: String, status: Option<u16> },
    /// HTTP 429: QFPay did not process the request (API §1.2). Back off and send again.
    #[error("rate limited by QFPay (HTTP 429){}", retry_after.map(|d| format!(", retry after {}s", d.as_secs())).unwrap_or_default())]
    RateLimited { retry_after: Option<Duration> },
    /// The client is set up wrongly (bad base URL, empty app code); nothing was sent.
    #[error("client misconfigured: {0}")]
    Config(String),
}

impl ClientError {
    /// Whether QFPay may have received (and acted on) the request.
    pub fn may_have_been_sent(&self) -> bool {
        matches!(self, ClientError::OutcomeUnknown { .. })
    }
}
