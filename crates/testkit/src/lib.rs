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
//! - [`RedisCluster`]: a local Redis Cluster of N primaries (no replicas), each a cluster-mode
//!   [`RedisServer`] with its own port, directory and AOF setting, joined by
//!   `redis-cli --cluster create` (by hand for one or two primaries, which it refuses); its
//!   `redis+cluster://` URL, slot owners, per-node key counts, slot migration
//!   (`redis-cli --cluster reshard`, or one slot by hand with `SETSLOT`/`MIGRATE`) that waits for
//!   every node to agree, and killing or restarting a node.
//! - [`unique_namespace`]: key prefix that keeps tests apart on a shared Redis.
//! - [`raw_connection`]: a plain Redis connection of the test's own, for setting up or inspecting
//!   keys behind the ledger's back (the ledger lends its connection to no one).
//! - The simulator: re-exported from `qfpay_sim` ([`SimHandle`], [`SimConfig`], [`Faults`]).
//!
//! Without Docker (this project's CI) Redis runs as a plain process; where Docker exists, start a
//! container (`docker run -p 6379 redis:7`) and point `REDIS_URL` at it.

mod postgres;
mod redis_cluster;
mod redis_server;

pub use postgres::{PostgresServer, postgres_bin_dir};
pub use qfpay_sim::{Faults, SimConfig, SimHandle};
pub use redis_cluster::RedisCluster;
pub use redis_server::{Aof, RedisServer, RedisServerBuilder, TestRedis, redis_server_binary, unique_namespace};

/// A plain connection to the Redis at `url`, for a test to write or read keys directly (to stage
/// what a crash, a rollback or another version would leave, or to look at what was written).
/// Panics when Redis cannot be reached: the test cannot go on without it.
pub async fn raw_connection(url: &str) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(url).unwrap_or_else(|e| panic!("Redis URL {url}: {e}"));
    client.get_multiplexed_async_connection().await.unwrap_or_else(|e| panic!("connecting to Redis at {url}: {e}"))
}

/// The ledger shards tests run with: `QFREFUND_SHARDS` (what the binary reads too, so suites that
/// spawn it agree), else 1. `make test` runs the suites with 1 and again with 4.
pub fn test_shards() -> usize {
    std::env::var("QFREFUND_SHARDS").ok().and_then(|v| v.trim().parse().ok()).unwrap_or(1)
}
