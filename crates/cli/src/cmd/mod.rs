//! One file per command (commands not yet moved here live beside `main.rs`).

pub mod config;
pub mod events;
pub mod list;
