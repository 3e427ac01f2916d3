//! Key names. Every key of one shard starts with `<namespace>:{<shard tag>}:`, so all of them hash
//! to one Redis Cluster slot and every Lua script, which works inside one shard, can touch every
//! key it declares. A ledger of one shard uses the configured tag itself; a ledger of N shards
//! uses `<tag>-0` … `<tag>-(N-1)`, and keeps its layout (how many shards) under the tag itself.

use crate::refund::state::State;

/// The final states whose refunds may be archived early, in `archive_remove.lua`'s KEYS order.
pub const SUMMARISED: [State; 3] = [State::Succeeded, State::Failed, State::Cancelled];

/// Names the keys of one ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// `namespace` separates deployments sharing a Redis; `tag` is the cluster hash tag.
    pub fn new(namespace: &str, tag: &str) -> Self {
        Self { prefix: format!("{namespace}:{{{tag}}}") }
    }

    /// The keys of shard `index` of `count` (see the module's documentation).
    pub fn for_shard(namespace: &str, tag: &str, index: usize, count: usize) -> Self {
        if count <= 1 { Self::new(namespace, tag) } else { Self::new(namespace, &format!("{tag}-{index}")) }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The refund record (hash), by its id in the shard (see `refund::placement::refund_id`).
    pub fn record(&self, id: &str) -> String {
        format!("{}:r:{id}", self.prefix)
    }

    /// The merchants that have refunds in this shard (a set): what lets a process refuse to run
    /// with a placement that would look for a merchant's refunds in another shard.
    pub fn merchants(&self) -> String {
        format!("{}:merchants", self.prefix)
    }

    /// Merchants whose refunds this shard must not take (a set): pinned to another shard (see
    /// `store::shards`), so a process whose placement predates the pin is refused.
    pub fn excluded(&self) -> String {
        format!("{}:excluded", self.prefix)
    }

    /// The ledger's layout (hash: `shards`, `pin:<merchant>`, `legacy_ids`), under the configured
    /// tag itself.
    pub fn layout(&self) -> String {
        format!("{}:layout", self.prefix)
    }

    /// The refund's timeline (a list, one entry per transition: `refund::timeline`).
    pub fn timeline(&self, id: &str) -> String {
        format!("{}:t:{id}", self.prefix)
    }

    /// The refund's attempts (a list: the evidence of each request sent for it, JSON, see
    /// `qfpay::Evidence`).
    pub fn evidence(&self, id: &str) -> String {
        format!("{}:e:{id}", self.prefix)
    }

    /// What stays of a final refund archived early (see `store::summary`).
    pub fn summary(&self, id: &str) -> String {
        format!("{}:s:{id}", self.prefix)
    }

    /// The ids of succeeded refunds archived early (see `store::summary`), by when they were
    /// created.
    pub fn summaries(&self) -> String {
        format!("{}:summaries", self.prefix)
    }

    /// The same for the refunds archived early in final state `state` (succeeded:
    /// [`Keys::summaries`]).
    pub fn summaries_in(&self, state: State) -> String {
        match state {
            State::Succeeded => self.summaries(),
            other => format!("{}:summaries:{other}", self.prefix),
        }
    }

    /// Every summaries index: succeeded, failed, cancelled (as `archive_remove.lua` takes them).
    pub fn every_summaries(&self) -> [String; 3] {
        SUMMARISED.map(|s| self.summaries_in(s))
    }

    /// The tombstones' bookkeeping (hash: levels, per-level counts, the sweep's cursor; see
    /// `store/tomb.lua`, where the buckets `x:<level>:<n>` and `xp:<level>:<n>` are named).
    pub fn tombs(&self) -> String {
        format!("{}:tombs", self.prefix)
    }

    /// The live workers (a hash under the configured tag itself: worker name → its
    /// `store::workers::WorkerInfo` as JSON, renewed every heartbeat).
    pub fn workers(&self) -> String {
        format!("{}:workers", self.prefix)
    }

    /// Which worker archives this shard now (a string with a TTL: one archiver per shard).
    pub fn archiver(&self) -> String {
        format!("{}:archiver", self.prefix)
    }

    /// Every non-final refund, scored by when a worker should next act (ms).
    pub fn due(&self) -> String {
        format!("{}:due", self.prefix)
    }

    /// The outcome stream: one entry per transition.
    pub fn events(&self) -> String {
        format!("{}:events", self.prefix)
    }

    /// Per payment: `paid`, `committed` (sum of succeeded refunds), `inflight` (the one refund sent).
    pub fn payment(&self, syssn: &str) -> String {
        format!("{}:pay:{syssn}", self.prefix)
    }

    /// The audit trail of operator actions (a stream, trimmed only of what the archive holds).
    pub fn audit(&self) -> String {
        format!("{}:audit", self.prefix)
    }

    /// A webhook delivery that failed at least once (hash: body, attempts, error, …), by event id.
    pub fn webhook(&self, event_id: &str) -> String {
        format!("{}:wh:{event_id}", self.prefix)
    }

    /// Webhook deliveries to retry, scored by when (ms).
    pub fn webhook_retry(&self) -> String {
        format!("{}:wh-retry", self.prefix)
    }

    /// Webhook deliveries given up, scored by when (ms).
    pub fn webhook_failed(&self) -> String {
        format!("{}:wh-failed", self.prefix)
    }

    /// Paused merchants: merchant → why.
    pub fn paused(&self) -> String {
        format!("{}:paused", self.prefix)
    }

    /// Refunds in one state, scored by when they entered it.
    pub fn state(&self, state: State) -> String {
        format!("{}:state:{state}", self.prefix)
    }

    /// A merchant's token bucket.
    /// (A string `"<tokens> <at ms>"`; the name changed from `rl:` when it stopped being a hash,
    /// so an upgrade never reads an old bucket as the wrong type: those expire within seconds.)
    pub fn rate(&self, merchant: &str) -> String {
        format!("{}:tb:{merchant}", self.prefix)
    }

    /// The channel producers publish on after enqueueing, so an idle worker fetches at once
    /// instead of polling.
    pub fn wake(&self) -> String {
        format!("{}:wake", self.prefix)
    }

    /// The merchants live workers hold credentials for (hash: merchant → until when, ms).
    pub fn served(&self) -> String {
        format!("{}:served", self.prefix)
    }

    /// The small write every durability wait follows (see `store::durable`), expiring.
    pub fn probe(&self) -> String {
        format!("{}:probe", self.prefix)
    }

    /// Every refund, scored by when it was created (ms): reports over a time window.
    pub fn created(&self) -> String {
        format!("{}:created", self.prefix)
    }

    /// Fresh refunds' ids, in the order they were enqueued (a list: see `store::fresh`), until a
    /// claim takes them.
    pub fn ready(&self) -> String {
        format!("{}:ready", self.prefix)
    }

    /// The KEYS every record script takes, in `common.lua`'s order.
    pub fn script_keys(&self, id: &str, syssn: &str) -> Vec<String> {
        let mut keys = vec![self.record(id), self.due(), self.events(), self.payment(syssn), self.paused()];
        keys.extend(State::ALL.into_iter().map(|s| self.state(s)));
        keys.push(self.created());
        keys.push(self.ready());
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_carries_the_hash_tag() {
        let k = Keys::new("qfrefund", "shop1");
        let mut all = k.script_keys("RF1", "123");
        all.extend([
            k.rate("m"),
            k.wake(),
            k.served(),
            k.probe(),
            k.audit(),
            k.webhook("1-0"),
            k.webhook_retry(),
            k.webhook_failed(),
            k.merchants(),
            k.excluded(),
            k.layout(),
            k.timeline("RF1"),
            k.evidence("RF1"),
            k.tombs(),
            k.summary("RF1"),
            k.summaries(),
            k.summaries_in(State::Failed),
            k.ready(),
            k.archiver(),
            k.workers(),
        ]);
        for key in all {
            assert!(key.starts_with("qfrefund:{shop1}:"), "{key}");
        }
        // claim_due declares the record and payment prefixes, which must never be keys (see fetch.rs).
        let prefixes = k.script_keys("", "");
        assert!(prefixes[0].ends_with(":r:") && prefixes[3].ends_with(":pay:"), "{prefixes:?}");
        assert_eq!(Keys::for_shard("q", "t", 0, 1).prefix(), "q:{t}");
        assert_eq!(Keys::for_shard("q", "t", 2, 4).prefix(), "q:{t-2}");
    }
}
