//! One file per command (commands not yet moved here live beside `main.rs`).

pub mod config;
