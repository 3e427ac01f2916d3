//! The refund ledger: the truth about every refund, and the queue workers take them from.
//! Everything that decides money lives here.
//!
//! # Layout
//! - [`refund`]: the domain, pure (no Redis):
//!   - [`refund::state`]: the eight [`State`]s, which are final, and every legal move
//!     (`State::EDGES`, written once);
//!   - [`refund::request`]: [`NewRefund`], validated before anything is written;
//!   - [`refund::record`]: the [`Record`] (one Redis hash per (merchant, `out_trade_no`));
//!   - [`refund::event`]: the outcome stream's [`Event`], one entry per transition;
//!   - [`refund::schedule`]: the [`Policy`] (enquiry and resubmit backoff via backon, full jitter,
//!     max age, lease), computed from counters stored on the record so it survives restarts;
//!   - [`refund::machine`]: the state machine as pure functions — `after_submit`,
//!     `after_enquiry`, the payment check, and the claim's decisions (`machine::claim::decide`,
//!     the specification the claim script is tested against);
//!   - [`refund::import`]: CSV and JSON Lines refund files, read a line at a time, every problem
//!     reported with its line and field.
//! - [`store`]: [`Ledger`], the only code that speaks to Redis. Each operation is one Lua script
//!   kept beside the Rust file that calls it (`store/*.lua`, each opening with what it
//!   guarantees), with its arguments declared once as a Rust struct: enqueue, claim and
//!   `claim_due` (fetching is claiming: lease + fence, "submitting" persisted before any HTTP call,
//!   one refund in flight per payment, the over-refund guard), transition (compare-and-set on
//!   `(state, fence)`), defer, operator actions, the due-index and its wake-ups, reads, stats,
//!   consumer groups on the outcome stream ([`StreamReader`]) and the webhook schedules. Every
//!   key of a shard carries the shard's `{hash tag}` ([`store::keys`]); a merchant's refunds live
//!   in one shard ([`store::shards`]); Redis Cluster URLs in [`store::cluster`]. The ledger lends
//!   its connections to no other crate: they call these operations.

mod error;
pub mod refund;
pub mod store;

pub use refund::machine::claim as claim_rules;
pub use refund::machine::payment_check;
pub use refund::ownership;
pub use refund::{event as events, import, machine, record, request as producer, schedule, state};
pub use store::{batch, durable, keys, merchants, outcome, pause, ready};

pub use batch::{LineFate, RERUN_ADVICE};
pub use events::Event;
pub use keys::Keys;
pub use machine::{Decision, EnquiryResult, SubmitResult};
pub use merchants::{UnknownMerchant, Unserved};
pub use outcome::{OUTCOME_UNKNOWN_ADVICE, WriteFate};
pub use producer::{DEFAULT_MERCHANT, NewRefund};
pub use ready::NotUsable;
pub use record::Record;
pub use schedule::Policy;
pub use state::State;
pub use store::check_redis_url;
pub use store::due::Waiter;

/// `url` without what could be a secret: everything before the last `@` (the credentials; a
/// password may hold `,` or `@`) and the query (`?sentinel_password=…`). When a `?` comes before
/// that `@` (a password with `?`, or a query with `@`), only the scheme is shown.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").map_or(("", url), |(s, r)| (s, r));
    let scheme = if scheme.is_empty() { String::new() } else { format!("{scheme}://") };
    let at = rest.rfind('@');
    let question = rest.find('?');
    if let (Some(at), Some(q)) = (at, question)
        && q < at
    {
        return format!("{scheme}***");
    }
    let hosts = at.map_or(rest, |at| &rest[at + 1..]);
    let (hosts, query) = hosts.split_once('?').map_or((hosts, ""), |(h, _)| (h, "?***"));
    format!("{scheme}{}{hosts}{query}", if at.is_some() { "***@" } else { "" })
}

/// The Redis every process uses when none is configured (`QFREFUND_REDIS_URL`).
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
pub use store::fetch::{Claimed, Fetched};
pub use store::operator::AuditEntry;
pub use store::workers::WorkerInfo;
pub use store::{
    Accepted, Claim, ClaimOptions, Deferral, DueWebhook, Enqueued, FailedWebhook, Ledger, LedgerConfig, LedgerError,
    Operation, PageCursor, RefundRef, Refusal, ServerInfo, Skipped, Stats, StreamReader, WebhookAttempt,
};
