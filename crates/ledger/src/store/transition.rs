//! What a worker writes after its request: the transition (compare-and-set on `(state, fence)`),
//! a deferral, the payment's amount learned by enquiry, and a token of the merchant's bucket. Each
//! is one script beside this file (`transition.lua`, `defer.lua`, `set_paid.lua`,
//! `rate_limit.lua`).

use std::time::Duration;

use crate::error::LedgerError;
use crate::refund::machine::Decision;
use crate::refund::record::Record;
use crate::refund::state::State;
use crate::store::Ledger;
use crate::store::args::script_args;
use crate::store::claim::RefundRef;
use crate::store::script::{DEFER, RATE_LIMIT, SET_PAID, TRANSITION};

script_args! {
    /// What `transition.lua` takes; the decision's field/value pairs follow (`ARGV[A_REST]` on).
    pub struct TransitionArgs<'a> {
        id: &'a str,
        expected: &'a str,
        /// Compared as written (a fence is a string on the Lua side: numbers lose digits).
        fence: String,
        new_state: &'a str,
        /// -1: leave the due-index.
        next_at: i64,
        now: i64,
        reason: &'a str,
        /// The merchant to pause, or ''.
        pause: &'a str,
        maxlen: u64,
        op: &'a str,
        lease_owner: &'a str,
    }
}

script_args! {
    /// What `defer.lua` takes.
    pub struct DeferArgs<'a> {
        id: &'a str,
        expected: &'a str,
        next_at: i64,
        now: i64,
        reason: &'a str,
        max_age: u64,
        maxlen: u64,
    }
}

script_args! {
    /// What `set_paid.lua` takes.
    pub struct SetPaidArgs { paid: u64 }
}

script_args! {
    /// What `rate_limit.lua` takes.
    pub struct RateArgs { rate: f64, burst: u32, now: i64 }
}

impl Ledger {
    /// Applies `decision` if this worker still holds the refund under `fence` in `expected` state.
    /// `Ok(false)`: the fence moved on — another worker took over, and nothing was written.
    /// `op` identifies this decision: applying the same `op` again (after a lost reply) is a no-op.
    pub async fn transition(
        &self,
        rec: &Record,
        expected: State,
        fence: u64,
        d: &Decision,
        op: &str,
    ) -> Result<bool, LedgerError> {
        let mut inv = self.on_record(&TRANSITION, &rec.merchant, &rec.id, &rec.syssn);
        inv.key(self.keys_for(&rec.merchant).audit());
        TransitionArgs {
            id: &rec.id,
            expected: expected.as_str(),
            fence: fence.to_string(),
            new_state: d.state.as_str(),
            next_at: d.next_at.unwrap_or(-1),
            now: self.now_ms(),
            reason: &d.reason,
            pause: if d.pause_merchant { rec.merchant.as_str() } else { "" },
            maxlen: self.config.events_maxlen,
            op,
            lease_owner: rec.lease_owner.as_deref().unwrap_or(""),
        }
        .push(&mut inv);
        for (k, v) in &d.set {
            inv.arg(*k).arg(v);
        }
        let reply: Vec<String> = inv.invoke_async(&mut self.con.clone()).await?;
        match reply.first().map(String::as_str) {
            Some("ok") => Ok(true),
            Some("stale") => Ok(false),
            Some("illegal") => Err(LedgerError::Script(format!(
                "transition {} -> {} is not a move the state machine allows (State::EDGES)",
                reply.get(1).map_or("?", String::as_str),
                reply.get(2).map_or("?", String::as_str)
            ))),
            _ => Err(LedgerError::Script(format!("transition answered {reply:?}"))),
        }
    }

    /// Moves the next step of an unheld refund to `next_at` (no state change, no event); past
    /// `max_age` the refund goes to `needs_review` instead. `Ok(false)`: it was not deferred.
    pub async fn defer(
        &self,
        rec: &Record,
        next_at: i64,
        reason: &str,
        max_age: Duration,
    ) -> Result<bool, LedgerError> {
        let mut inv = self.on_record(&DEFER, &rec.merchant, &rec.id, &rec.syssn);
        DeferArgs {
            id: &rec.id,
            expected: rec.state.as_str(),
            next_at,
            now: self.now_ms(),
            reason,
            max_age: max_age.as_millis() as u64,
            maxlen: self.config.events_maxlen,
        }
        .push(&mut inv);
        let reply: Vec<String> = inv.invoke_async(&mut self.con.clone()).await?;
        Ok(reply.first().is_some_and(|r| r == "ok"))
    }

    /// Records a payment's amount learned by enquiry (first writer wins); returns the recorded one.
    pub async fn set_paid(&self, target: &RefundRef, paid: u64) -> Result<u64, LedgerError> {
        let mut inv = self.on_record(&SET_PAID, &target.merchant, &target.id, &target.syssn);
        SetPaidArgs { paid }.push(&mut inv);
        let v: String = inv.invoke_async(&mut self.con.clone()).await?;
        v.parse().map_err(|_| LedgerError::Script(format!("set_paid answered {v:?}")))
    }

    /// Takes a token from `merchant`'s bucket: `Ok(0)` if taken, else the ms to wait for one.
    pub async fn take_token(&self, merchant: &str, per_sec: f64, burst: u32) -> Result<u64, LedgerError> {
        let mut inv = RATE_LIMIT.prepare_invoke();
        inv.key(self.keys_for(merchant).rate(merchant));
        RateArgs { rate: per_sec, burst, now: self.now_ms() }.push(&mut inv);
        Ok(inv.invoke_async(&mut self.con.clone()).await?)
    }
}
