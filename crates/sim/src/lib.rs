//! `qfpay-sim`: a QFPay `/trade/v1` simulator that tests (ours and our users') can trust.
//!
//! # Layout
//! - [`bank`]: merchants, payments and refunds, and QFPay's refund rules (API §9): unknown or
//!   unpaid payment, reused `out_trade_no`, one refund in flight per payment, the refundable
//!   remainder, the nightly window; enquiries answered like API §5; the audit.
//! - [`faults`]: what can go wrong on the wire, as probabilities and durations, with a seeded
//!   generator so a run repeats.
//! - [`http`]: the server — QFPay's paths, signatures checked (`1108`), parameters checked
//!   (`1104`), faults applied, the admin paths under `/_sim/` — and [`SimHandle`] to run it
//!   in-process on a free port.
//! - [`args`]: the command line (`qfpay-sim`, and `qfrefund sim` reuses it).
//!
//! The simulator shares nothing with the worker beyond the `qfpay` crate's types and signing.

mod admin;
pub mod args;
mod audit;
pub mod bank;
pub mod faults;
pub mod http;
mod query;

pub use bank::{Merchant, PaymentSeed};
pub use faults::Faults;
pub use http::{SimConfig, SimHandle};
