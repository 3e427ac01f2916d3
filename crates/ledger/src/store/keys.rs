//! Key names. Every key of one deployment starts with `<namespace>:{<tag>}:`, so all of them hash
//! to one Redis Cluster slot and every Lua script can touch every key it declares.

use crate::refund::state::State;

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

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The refund record (hash).
    pub fn record(&self, out_trade_no: &str) -> String {
        format!("{}:r:{out_trade_no}", self.prefix)
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

    /// The audit trail of operator actions (a stream, never trimmed).
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

    /// The KEYS every record script takes, in `lua/common.lua`'s order.
    pub fn script_keys(&self, out_trade_no: &str, syssn: &str) -> Vec<String> {
        let mut keys = vec![self.record(out_trade_no), self.due(), self.events(), self.payment(syssn), self.paused()];
        keys.extend(State::ALL.into_iter().map(|s| self.state(s)));
        keys.push(self.created());
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
        ]);
        for key in all {
            assert!(key.starts_with("qfrefund:{shop1}:"), "{key}");
        }
    }
}
