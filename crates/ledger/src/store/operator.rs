//! Operator actions on a refund (retry, resolve, cancel, enquire now) and the audit trail that records them.

use std::collections::HashMap;

use crate::error::LedgerError;
use crate::refund::state::State;
use crate::store::Ledger;
use crate::store::args::script_args;
use crate::store::keys::Keys;
use crate::store::script::OPERATE;

/// What an operator does to a refund (see `lua/operate.lua`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// needs_review → pending (enquire first) or queued (never sent).
    Retry,
    /// needs_review → the final state the operator established with QFPay. A success is refused
    /// for a refund never sent, and for one that would take its payment past what was paid.
    Resolve(State),
    /// A resolve to success past what the payment's records allow, by a person holding QFPay's
    /// proof that the refund succeeded; audited as forced. A refund never sent is still refused.
    ForceResolve(State),
    /// queued → cancelled.
    Cancel,
    /// pending, due now: its next enquiry brought forward (always safe: nothing is sent but an
    /// enquiry).
    EnquireNow,
}

/// Why an operator action was not carried out (it was audited all the same, when the refund exists).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("no refund with out_trade_no {0:?}")]
    NoSuchRefund(String),
    // (Of the merchant the action named: out_trade_no is unique per merchant.)
    /// The refund is not in a state that allows the action; says which and why.
    #[error("{0}")]
    Refused(String),
}

/// One operator action, as the audit trail keeps it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditEntry {
    pub id: String,
    /// Empty for a merchant's pause or resume.
    pub out_trade_no: String,
    /// The merchant paused or resumed, or whose refund it was (empty in entries written before
    /// refunds were merchant-scoped).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub merchant: String,
    pub action: String,
    pub who: String,
    pub why: String,
    pub from: String,
    pub to: String,
    /// `ok`, or `refused: <why>`.
    pub outcome: String,
    pub at: i64,
}

impl AuditEntry {
    fn from_fields(id: String, mut f: HashMap<String, String>) -> Self {
        let mut take = |k: &str| f.remove(k).unwrap_or_default();
        Self {
            id,
            out_trade_no: take("out_trade_no"),
            merchant: take("merchant"),
            action: take("action"),
            who: take("who"),
            why: take("why"),
            from: take("from"),
            to: take("to"),
            outcome: take("outcome"),
            at: take("at").parse().unwrap_or(0),
        }
    }
}

script_args! {
    /// What `operate.lua` takes. `target`: the state a resolve names ('' otherwise); `force`: a
    /// resolve past the paid amount.
    pub struct OperateArgs<'a> {
        id: &'a str,
        out_trade_no: &'a str,
        merchant: &'a str,
        action: &'a str,
        target: &'a str,
        who: &'a str,
        why: &'a str,
        now: i64,
        maxlen: u64,
        force: bool,
    }
}

impl Ledger {
    /// An operator's action on `merchant`'s refund `out_trade_no`, recorded with `who` and `why`.
    /// `Ok(Err(why))`: refused.
    pub async fn operate(
        &self,
        merchant: &str,
        out_trade_no: &str,
        op: Operation,
        who: &str,
        why: &str,
    ) -> Result<Result<State, Refusal>, LedgerError> {
        let Some(rec) = self.get(merchant, out_trade_no).await? else {
            return Ok(Err(Refusal::NoSuchRefund(out_trade_no.to_owned())));
        };
        let (action, target) = match op {
            Operation::Retry => ("retry", ""),
            Operation::Resolve(s) | Operation::ForceResolve(s) => ("resolve", s.as_str()),
            Operation::Cancel => ("cancel", ""),
            Operation::EnquireNow => ("enquire", ""),
        };
        let force = matches!(op, Operation::ForceResolve(_));
        let shard = self.shard_of(&rec.merchant);
        let mut inv = self.on_record(&OPERATE, &rec.merchant, &rec.id, &rec.syssn);
        inv.key(self.shard_keys(shard).audit());
        OperateArgs {
            id: &rec.id,
            out_trade_no,
            merchant,
            action,
            target,
            who,
            why,
            now: self.now_ms(),
            maxlen: self.config.events_maxlen,
            force,
        }
        .push(&mut inv);
        let reply: Vec<String> = inv.invoke_async(&mut self.con.clone()).await?;
        let at = |i: usize| reply.get(i).cloned().unwrap_or_default();
        match at(0).as_str() {
            "ok" => {
                let state = at(1).parse::<State>().map_err(|e| LedgerError::Script(e.to_string()))?;
                // A retried refund is due now: tell idle workers, as an enqueue does.
                if !state.is_final() {
                    self.wake(shard).await;
                }
                Ok(Ok(state))
            }
            "missing" => Ok(Err(Refusal::NoSuchRefund(out_trade_no.to_owned()))),
            "refused" => Ok(Err(Refusal::Refused(at(1)))),
            _ => Err(LedgerError::Script(format!("operate answered {reply:?}"))),
        }
    }

    /// Audit-trail entries (operator actions, refused ones included) after the id `after`
    /// (`"0"`: from the beginning), at most `count`: every shard's trail, merged in id order.
    pub async fn audit(&self, after: &str, count: usize) -> Result<Vec<AuditEntry>, LedgerError> {
        let entries = self.merged_after(Keys::audit, after, count).await?;
        Ok(entries.into_iter().map(|(id, f)| AuditEntry::from_fields(id, f)).collect())
    }

    /// The newest `count` entries of the audit trail (every shard), newest first.
    pub async fn recent_audit(&self, count: usize) -> Result<Vec<AuditEntry>, LedgerError> {
        use redis::AsyncCommands;
        let mut all = Vec::new();
        for shard in 0..self.shard_count() {
            let reply: redis::streams::StreamRangeReply =
                self.con.clone().xrevrange_count(self.shard_keys(shard).audit(), "+", "-", count).await?;
            for e in reply.ids {
                let fields: std::collections::HashMap<String, String> = e
                    .map
                    .iter()
                    .filter_map(|(k, v)| redis::from_redis_value_ref::<String>(v).ok().map(|v| (k.clone(), v)))
                    .collect();
                all.push(AuditEntry::from_fields(e.id, fields));
            }
        }
        let key = |id: &str| {
            let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
            (ms.parse::<u64>().unwrap_or(0), seq.parse::<u64>().unwrap_or(0))
        };
        all.sort_by_key(|e| std::cmp::Reverse(key(&e.id)));
        all.truncate(count);
        Ok(all)
    }
}
