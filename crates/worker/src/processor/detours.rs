//! The paths a step takes when it cannot simply send: no credentials for the merchant on this
//! worker, the payment's amount still to learn, a request that cannot be built from the
//! configuration. Each ends somewhere visible (deferred, reviewed, the merchant paused).

use std::time::Duration;

use ledger::machine::{Action, action_for};
use ledger::{LedgerError, RefundRef};
use qfpay::Client;
use tracing::{debug, warn};

use super::{Processor, Step, ms};
use crate::requests;

impl Processor {
    /// This worker has no credentials for the refund's merchant: put it off (another worker's
    /// configuration, or a fixed one after a restart, will take it); past its maximum age it goes
    /// to `needs_review`.
    pub(crate) async fn no_credentials(&self, target: &RefundRef) -> Result<Step, LedgerError> {
        let why = format!("no credentials for merchant {:?} on this worker", target.merchant);
        warn!(merchant = %target.merchant, "{why}");
        let Some(rec) = self.ledger.get_ref(target).await? else {
            return Ok(Step::Nothing("no such refund".into()));
        };
        if action_for(rec.state) == Action::Nothing {
            return Ok(Step::Nothing(format!("state {}", rec.state)));
        }
        let next = self.ledger.now_ms() + ms(self.policy.paused_wait);
        let deferred = self.ledger.defer(&rec, next, &why, self.policy.max_age).await?;
        if !deferred {
            warn!(reason = %why, "not deferred: it waited past its maximum age (needs review), or it moved on");
        }
        Ok(if deferred { Step::Deferred(why) } else { Step::Review(why) })
    }

    /// A request for this merchant cannot be built from its configuration: nothing can be sent,
    /// so the refund goes to a person at once and the merchant is paused (as for QFPay's own
    /// configuration codes), instead of the refund coming back for ever.
    pub(crate) async fn misconfigured(&self, target: &RefundRef, why: &str) -> Result<Step, LedgerError> {
        let why = format!("configuration error for merchant {:?}: {why}", target.merchant);
        tracing::error!(merchant = %target.merchant, reason = %why, "needs review: merchant paused");
        self.ledger.pause(&target.merchant, &format!("worker {}", self.worker_id), &why).await?;
        let Some(rec) = self.ledger.get_ref(target).await? else {
            return Ok(Step::Nothing("no such refund".into()));
        };
        // A maximum age of zero: to needs_review now (unless someone holds it or it moved on).
        self.ledger.defer(&rec, self.ledger.now_ms(), &why, Duration::ZERO).await?;
        Ok(Step::Review(why))
    }

    /// Learns what the payment was for by enquiring it (promise 3 needs the amount). If QFPay
    /// cannot say, the refund goes ahead and QFPay's own remainder check (`1272`) still applies.
    /// The claim that asked for it took a rate-limit token for this enquiry. `Ok(Err(why))`: the
    /// enquiry cannot even be built from the configuration.
    pub(crate) async fn learn_paid(
        &self,
        client: &Client,
        mchid: Option<&str>,
        target: &RefundRef,
    ) -> Result<Result<(), String>, LedgerError> {
        let req = match requests::payment_enquiry(&target.syssn, mchid, self.ledger.now_ms()) {
            Ok(req) => req,
            Err(e) => return Ok(Err(e)),
        };
        match client.enquire(&req).await {
            Ok(answer) if answer.is_ok() => {
                let payment = answer.data.iter().find(|r| {
                    r.syssn.as_deref() == Some(target.syssn.as_str())
                        && r.order_type.as_deref().is_none_or(|t| t == "payment")
                        && r.respcd() == "0000"
                });
                if let Some(paid) = payment.and_then(|p| p.txamt.as_deref()).and_then(|t| t.parse::<u64>().ok()) {
                    let recorded = self.ledger.set_paid(target, paid).await?;
                    debug!(syssn = %target.syssn, recorded, "learned the payment's amount");
                }
            }
            Ok(answer) => debug!(respcd = answer.respcd(), "payment enquiry refused; going ahead"),
            Err(e) => debug!(error = %e, "payment enquiry failed; going ahead"),
        }
        Ok(Ok(()))
    }
}
