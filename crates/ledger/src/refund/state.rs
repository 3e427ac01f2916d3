//! The eight states of a refund and which of them are final.

use std::fmt;
use std::str::FromStr;

/// Where a refund stands. Stored as its snake_case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    /// Accepted, never sent.
    Queued,
    /// A worker holds the lease and is (or was, before it died) sending it. Persisted *before* the
    /// HTTP call, so whoever finds it here knows it may have reached QFPay: enquire, never resend.
    Submitting,
    /// Sent, outcome not final or unknown: enquire with backoff.
    Pending,
    /// Proven not to have taken effect (rejected for a transient reason, never sent, or not found
    /// after enough enquiries): resend with the same `out_trade_no` at `next_at`.
    RetryWait,
    /// Final: QFPay confirmed the refund.
    Succeeded,
    /// Final: QFPay refused it, or it would exceed what was paid and was never sent.
    Failed,
    /// A person must decide (config error, max age, an answer that cannot be read safely).
    /// Not final: an operator can retry or resolve it.
    NeedsReview,
    /// Final: withdrawn before it was ever sent.
    Cancelled,
}

impl State {
    pub const ALL: [State; 8] = [
        State::Queued,
        State::Submitting,
        State::Pending,
        State::RetryWait,
        State::Succeeded,
        State::Failed,
        State::NeedsReview,
        State::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Queued => "queued",
            State::Submitting => "submitting",
            State::Pending => "pending",
            State::RetryWait => "retry_wait",
            State::Succeeded => "succeeded",
            State::Failed => "failed",
            State::NeedsReview => "needs_review",
            State::Cancelled => "cancelled",
        }
    }

    /// Final states never change again.
    pub fn is_final(self) -> bool {
        matches!(self, State::Succeeded | State::Failed | State::Cancelled)
    }

    /// Every move a refund may make, written once. The pure machine's decisions, the claim, the
    /// operator's actions and the store's transition script all obey it; the transition script is
    /// built with this table (see [`State::edges_lua`]) and refuses any other move.
    pub const EDGES: &'static [(State, State)] = &[
        // The claim: a submit, an over-refund refused before sending, a wait past the maximum age.
        (State::Queued, State::Submitting),
        (State::Queued, State::Failed),
        (State::Queued, State::NeedsReview),
        // The operator withdraws a refund never sent.
        (State::Queued, State::Cancelled),
        // After a submit, or a takeover of an orphan (always an enquiry).
        (State::Submitting, State::Pending),
        (State::Submitting, State::Succeeded),
        (State::Submitting, State::Failed),
        (State::Submitting, State::RetryWait),
        (State::Submitting, State::NeedsReview),
        // After an enquiry.
        (State::Pending, State::Pending),
        (State::Pending, State::Succeeded),
        (State::Pending, State::Failed),
        (State::Pending, State::RetryWait),
        (State::Pending, State::NeedsReview),
        // A resend is a submit.
        (State::RetryWait, State::Submitting),
        (State::RetryWait, State::Failed),
        (State::RetryWait, State::NeedsReview),
        // The operator: retry (enquire first if ever sent, else submit) or resolve.
        (State::NeedsReview, State::Pending),
        (State::NeedsReview, State::Queued),
        (State::NeedsReview, State::Succeeded),
        (State::NeedsReview, State::Failed),
    ];

    /// Whether a refund in `self` may move to `to` (see [`State::EDGES`]).
    pub fn can_go(self, to: State) -> bool {
        Self::EDGES.contains(&(self, to))
    }

    /// [`State::EDGES`] as a Lua table for the ledger's scripts: `EDGE['from>to'] = true`.
    pub fn edges_lua() -> String {
        let mut out = String::from("local EDGE = {}\n");
        for (from, to) in Self::EDGES {
            out.push_str(&format!("EDGE['{from}>{to}'] = true\n"));
        }
        out
    }

    /// States a worker acts on (they sit in the due-index).
    pub fn is_workable(self) -> bool {
        matches!(self, State::Queued | State::Submitting | State::Pending | State::RetryWait)
    }
}

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for State {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .enum_values(Some(State::ALL.iter().map(|s| s.as_str())))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for State {}

impl serde::Serialize for State {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for State {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown state name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown state {0:?}: expected one of queued, submitting, pending, retry_wait, succeeded, failed, needs_review, cancelled"
)]
pub struct UnknownState(pub String);

impl FromStr for State {
    type Err = UnknownState;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        State::ALL.into_iter().find(|st| st.as_str() == s).ok_or_else(|| UnknownState(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_states_have_no_way_out_and_every_other_state_has_one() {
        for s in State::ALL {
            let out = State::ALL.iter().any(|t| s.can_go(*t));
            assert_eq!(out, !s.is_final(), "{s}");
        }
        assert!(State::edges_lua().contains("EDGE['submitting>pending'] = true"));
        assert!(!State::Succeeded.can_go(State::Failed));
        assert!(!State::Submitting.can_go(State::Queued), "a refund that may have been sent is never queued again");
    }

    #[test]
    fn names_round_trip_and_exactly_three_are_final() {
        for s in State::ALL {
            assert_eq!(s.as_str().parse::<State>(), Ok(s));
        }
        let finals: Vec<_> = State::ALL.into_iter().filter(|s| s.is_final()).collect();
        assert_eq!(finals, [State::Succeeded, State::Failed, State::Cancelled]);
        assert!("done".parse::<State>().is_err());
    }
}
