//! One file per command, grouped as the people who run them think of them.

// Running qfrefund.
pub mod serve;
pub mod worker;

// Refunds: in, and what became of them.
pub mod enqueue;
pub mod events;
pub mod import;
pub mod list;
pub mod status;

// Operating: a person's actions and what they look at.
pub mod audit;
pub mod operate;
pub mod pause;
pub mod reconcile;
pub mod redeliver;
pub mod stats;
pub mod workers;

// Keeping the ledger: retention and upgrades.
pub mod enable_retention;
pub mod prune;
pub mod scope_merchants;

// Setting up: configuration, health, QFPay directly, the manual.
pub mod config;
pub mod docs;
pub mod ping;
pub mod qfpay;
