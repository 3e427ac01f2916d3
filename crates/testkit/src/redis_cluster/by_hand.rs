//! Joining one or two primaries into a cluster, which `redis-cli --cluster create` refuses: the
//! steps it takes, done directly. Each node gets a distinct config epoch and its share of the
//! slots; node 0 meets every other node, and gossip tells each about the rest.

use std::io;

use super::{RedisCluster, SLOTS};

impl RedisCluster {
    /// Node `i` of `n` gets `CLUSTER SET-CONFIG-EPOCH i + 1` (distinct epochs, as `redis-cli`
    /// gives them, so that no epoch collision has to be resolved first) and
    /// `CLUSTER ADDSLOTSRANGE` of the `i`-th of `n` equal ranges of the 16384 slots; then node 0
    /// sends `CLUSTER MEET` for every other node. Returns what was done, for the error message of
    /// a cluster that then does not converge.
    pub(super) fn join_by_hand(&self) -> io::Result<String> {
        let n = self.nodes.len();
        let mut done = Vec::with_capacity(n);
        for i in 0..n {
            let (first, last) = (SLOTS * i / n, SLOTS * (i + 1) / n - 1);
            self.query::<()>(i, redis::cmd("CLUSTER").arg("SET-CONFIG-EPOCH").arg(i + 1))?;
            self.query::<()>(i, redis::cmd("CLUSTER").arg("ADDSLOTSRANGE").arg(first).arg(last))?;
            done.push(format!("node {i}: slots {first}-{last}"));
        }
        for (i, port) in self.ports().into_iter().enumerate().skip(1) {
            self.query::<()>(0, redis::cmd("CLUSTER").arg("MEET").arg("127.0.0.1").arg(port))?;
            done.push(format!("node 0 met node {i}"));
        }
        Ok(format!("joined by hand: {}", done.join(", ")))
    }
}
