//! Fetching is claiming: [`Ledger::claim_due`] takes up to K refunds that are due from the
//! due-index and claims each of them in one atomic call (`lua/claim_due.lua`, built on
//! `lua/claim_one.lua`). The claims it hands out are the worker's tasks; a refund that is not
//! handed out (deferred, refused, sent to review) has been dealt with in the same call. There is
//! no second queue: a worker that dies leaves leases that expire, and the refund is due again.

use crate::error::LedgerError;
use crate::store::Ledger;
use crate::store::claim::{Claim, ClaimArgs, ClaimOptions, RefundRef, parse_claim};
use crate::store::durable;
use crate::store::script::CLAIM_DUE;

/// One refund a fetch looked at, and what its claim said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub target: RefundRef,
    pub claim: Claim,
}

impl Claimed {
    /// Whether this claim hands the worker something to do (a request to send).
    pub fn is_task(&self) -> bool {
        matches!(self.claim, Claim::Submit { .. } | Claim::Enquire { .. } | Claim::NeedPaid)
    }
}

/// What one fetch did.
#[derive(Debug, Clone, Default)]
pub struct Fetched {
    /// Every refund looked at, in due order.
    pub claims: Vec<Claimed>,
    /// When the earliest refund left in the due-index is due (ms), if any.
    pub next_due: Option<i64>,
}

impl Ledger {
    /// Claims up to `limit` due refunds (oldest first) for this worker in one round trip, each as
    /// [`Ledger::claim`] would. When the claims must be durable (`WAITAOF`, replicas), one wait
    /// covers the whole batch, in the same pipeline as the claims.
    /// Works on one shard: a worker spreads its fetches over the shards it serves.
    pub async fn claim_due(&self, shard: usize, limit: usize, o: &ClaimOptions<'_>) -> Result<Fetched, LedgerError> {
        let keys = self.shard_keys(shard);
        let mut inv = CLAIM_DUE.prepare_invoke();
        // Record and payment keys are derived per refund from these prefixes (one hash tag). The
        // prefixes themselves are never keys (ids and syssns are never empty), and that matters:
        // while the shard's slot migrates, a script with a declared key absent is answered
        // TRYAGAIN instead of running on the node importing the slot, where a record not yet
        // moved would read as missing — and be dropped from the due-index.
        for k in keys.script_keys("", "") {
            inv.key(k);
        }
        inv.key(keys.rate(""));
        ClaimArgs { limit: limit.max(1), ..ClaimArgs::new(self, o) }.push(&mut inv);
        let (reply, durable): (Vec<Vec<String>>, bool) = durable::invoke(
            &mut self.con.clone(),
            &inv,
            &self.durability(o.durable_local && self.fsyncs_on_demand()),
            &self.probe_key(shard),
        )
        .await?;
        let mut entries = reply.into_iter();
        let next_due = entries.next().and_then(|h| h.first().and_then(|s| s.parse::<f64>().ok())).map(|s| s as i64);
        let mut claims = Vec::new();
        for e in entries {
            let [id, otn, syssn, merchant, ..] = e.as_slice() else {
                return Err(LedgerError::Script(format!("claim_due answered {e:?}")));
            };
            let claim = match parse_claim(keys, id, &e[4..], durable) {
                Ok(claim) => claim,
                // One unreadable answer never costs the rest of the batch. This one is claimed; its
                // lease expires and it is taken over (enquired, never resent blindly).
                Err(err) => Claim::Skip(crate::store::claim::Skipped::Broken(err.to_string())),
            };
            let target = RefundRef {
                id: id.clone(),
                out_trade_no: otn.clone(),
                syssn: syssn.clone(),
                merchant: merchant.clone(),
            };
            claims.push(Claimed { target, claim });
        }
        Ok(Fetched { claims, next_due })
    }
}
