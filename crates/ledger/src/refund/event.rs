//! The outcome stream (a Redis Stream): one entry per transition, written in the same atomic step
//! as the transition itself, carrying the record's public fields. Producers read it (or follow it
//! with a consumer group) to learn every outcome.

use std::collections::HashMap;

use serde::ser::{Serialize, SerializeMap, Serializer};

/// One entry of the outcome stream. The stream holds text; as JSON (`qfrefund events`, webhook
/// bodies) the counts, amounts and times are numbers (see the `Serialize` impl).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The stream id (`<ms>-<seq>`): resume reading after it.
    pub id: String,
    pub out_trade_no: String,
    pub state: String,
    pub prev_state: String,
    pub syssn: String,
    pub txamt: String,
    pub merchant: String,
    pub respcd: String,
    pub resperr: String,
    pub refund_syssn: String,
    pub reason: String,
    pub submits: String,
    pub enquiries: String,
    /// The fence of the claim under which the transition was made (it grows with every claim).
    pub fence: String,
    /// When a worker will act next (ms; `0` for final states and needs_review).
    pub next_at: String,
    /// When the transition happened (ms since the epoch).
    pub at: String,
}

impl Event {
    /// An entry read from the stream directly (e.g. through a consumer group): its id and fields.
    pub fn from_stream(id: String, f: HashMap<String, String>) -> Self {
        Self::from_fields(id, f)
    }

    pub(crate) fn from_fields(id: String, mut f: HashMap<String, String>) -> Self {
        let mut take = |k: &str| f.remove(k).unwrap_or_default();
        Self {
            id,
            out_trade_no: take("out_trade_no"),
            state: take("state"),
            prev_state: take("prev_state"),
            syssn: take("syssn"),
            txamt: take("txamt"),
            merchant: take("merchant"),
            respcd: take("respcd"),
            resperr: take("resperr"),
            refund_syssn: take("refund_syssn"),
            reason: take("reason"),
            submits: take("submits"),
            enquiries: take("enquiries"),
            fence: take("fence"),
            next_at: take("next_at"),
            at: take("at"),
        }
    }

    /// Whether this entry records a final outcome.
    pub fn is_final(&self) -> bool {
        self.state.parse::<crate::State>().is_ok_and(|s| s.is_final())
    }
}

impl Serialize for Event {
    /// Strings as they are; `txamt`, `submits`, `enquiries`, `fence`, `next_at` and `at` as JSON
    /// integers (`null` where the stream has nothing or no number, as for an entry written by a
    /// foreign tool).
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let number = |v: &str| v.parse::<i64>().ok();
        let mut m = s.serialize_map(Some(16))?;
        m.serialize_entry("id", &self.id)?;
        m.serialize_entry("out_trade_no", &self.out_trade_no)?;
        m.serialize_entry("state", &self.state)?;
        m.serialize_entry("prev_state", &self.prev_state)?;
        m.serialize_entry("syssn", &self.syssn)?;
        m.serialize_entry("txamt", &number(&self.txamt))?;
        m.serialize_entry("merchant", &self.merchant)?;
        m.serialize_entry("respcd", &self.respcd)?;
        m.serialize_entry("resperr", &self.resperr)?;
        m.serialize_entry("refund_syssn", &self.refund_syssn)?;
        m.serialize_entry("reason", &self.reason)?;
        m.serialize_entry("submits", &number(&self.submits))?;
        m.serialize_entry("enquiries", &number(&self.enquiries))?;
        m.serialize_entry("fence", &number(&self.fence))?;
        m.serialize_entry("next_at", &number(&self.next_at))?;
        m.serialize_entry("at", &number(&self.at))?;
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_numbers_in_json() {
        let fields =
            [("out_trade_no", "RF-1"), ("txamt", "1250"), ("submits", "1"), ("fence", "17"), ("at", "1700000000000")];
        let e = Event::from_stream("1-0".into(), fields.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["txamt"], 1250);
        assert_eq!(v["submits"], 1);
        assert_eq!(v["fence"], 17);
        assert_eq!(v["at"], 1_700_000_000_000_i64);
        assert!(v["enquiries"].is_null(), "nothing in the stream: null, not 0");
        assert_eq!(v["out_trade_no"], "RF-1");
        assert_eq!(v["respcd"], "");
    }
}
