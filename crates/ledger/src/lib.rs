//! The refund ledger: the truth about every refund. apalis only carries "look at this refund now";
//! everything that decides money lives here.
//!
//! # Layout
//! - [`state`]: the eight [`State`]s; which are final.
//! - [`record`]: the [`Record`] (one Redis hash per `out_trade_no`).
//! - [`machine`]: the state machine as pure functions — [`machine::after_submit`],
//!   [`machine::after_enquiry`] and [`machine::action_for`] — table-tested without Redis.
//! - [`schedule`]: the [`Policy`] (enquiry and resubmit backoff via backon, full jitter, max age,
//!   lease), computed from counters stored on the record so it survives restarts.
//! - [`producer`]: [`NewRefund`], validated before anything is written.
//! - [`import`]: CSV and JSON Lines refund files, read a line at a time, every problem reported
//!   with its line and field.
//! - [`store`]: [`Ledger`], the Redis store. Each operation is one Lua script (`src/lua/*.lua`,
//!   each opening with what it guarantees): enqueue, claim (lease + fence, "submitting" persisted
//!   before any HTTP call, one refund in flight per payment, the over-refund guard), transition
//!   (compare-and-set on `(state, fence)`), defer, feed (the due-index), rate limit.
//! - [`keys`]: every key under one `{hash tag}`.
//! - [`events`]: the outcome stream, one entry per transition.

mod args;
pub mod batch;
mod claim;
pub mod claim_rules;
pub mod conn;
mod due;
pub mod durable;
mod enqueue;
mod error;
pub mod events;
pub mod fetch;
pub mod gauges;
pub mod import;
pub mod keys;
pub mod machine;
pub mod merchants;
mod operator;
pub mod outcome;
pub mod ownership;
pub mod pause;
pub mod payment_check;
pub mod producer;
mod reads;
pub mod ready;
pub mod record;
pub mod schedule;
mod scripts;
mod server;
pub mod state;
mod stats;
pub mod store;

pub use batch::{LineFate, RERUN_ADVICE};
pub use conn::{Endpoint, RedisConn};
pub use due::Waiter;
pub use events::Event;
pub use fetch::{Claimed, Fetched};
pub use keys::Keys;
pub use machine::{Decision, EnquiryResult, SubmitResult};
pub use merchants::{UnknownMerchant, Unserved};
pub use outcome::{OUTCOME_UNKNOWN_ADVICE, WriteFate};
pub use producer::{DEFAULT_MERCHANT, NewRefund};
pub use ready::NotUsable;
pub use record::Record;
pub use schedule::Policy;
pub use state::State;
pub use store::{
    Accepted, Claim, ClaimOptions, Deferral, Enqueued, Ledger, LedgerConfig, LedgerError, Operation, PageCursor,
    RefundRef, Refusal, ServerInfo, Skipped, Stats, redis_client,
};
