//! The shared test harness. Real parts only: a real `redis-server` process per test, the QFPay
//! simulator over real HTTP.
//!
//! # Layout
//! - [`RedisServer`]: spawns `redis-server` on a free loopback port in its own temporary
//!   directory, with AOF off, `everysec` or `always` and an optional password; `kill` (SIGKILL),
//!   `restart` (from its AOF, same port) and cleanup on drop.
//! - [`TestRedis`]: what a test asks for — the `REDIS_URL` given by the environment (a Redis the
//!   caller runs, e.g. in a container), else a fresh [`RedisServer`]. Tests that need to kill or
//!   restart Redis use [`RedisServer`] directly.
//! - [`unique_namespace`]: key prefix that keeps tests apart on a shared Redis.
//! - The simulator: re-exported from `qfpay_sim` ([`SimHandle`], [`SimConfig`], [`Faults`]).
//!
//! Without Docker (this project's CI) Redis runs as a plain process; where Docker exists, start a
//! container (`docker run -p 6379 redis:7`) and point `REDIS_URL` at it.

mod redis_server;

pub use qfpay_sim::{Faults, SimConfig, SimHandle};
pub use redis_server::{Aof, RedisServer, RedisServerBuilder, TestRedis, redis_server_binary, unique_namespace};
