//! The outcome stream (a Redis Stream): one entry per transition, written in the same atomic step
//! as the transition itself, carrying the record's public fields. Producers read it (or follow it
//! with a consumer group) to learn every outcome.

use std::collections::HashMap;

use serde::Serialize;

/// One entry of the outcome stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
