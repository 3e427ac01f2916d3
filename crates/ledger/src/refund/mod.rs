//! The refund domain, pure: no Redis, no I/O. What a refund is, how it may move, and what each
//! answer from QFPay makes of it; the store applies these decisions atomically.

pub mod event;
pub mod import;
pub mod machine;
pub mod ownership;
pub mod placement;
pub mod record;
pub mod request;
pub mod schedule;
pub mod state;
pub mod timeline;
pub mod tombstone;
