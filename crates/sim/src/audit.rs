//! The simulator's audit of what it applied: the evidence every test checks (what QFPay would
//! have done), not the ledger's own account.

use std::collections::BTreeMap;

use crate::bank::{Bank, RefundState};

impl Bank {
    /// Every refund recorded, with per-refund (`by_refund`: `<app_code>/<out_trade_no>`, the scope
    /// QFPay gives `out_trade_no`), per-`out_trade_no` (every merchant's summed) and per-payment
    /// totals, and any violation of "never twice" / "never more than paid" (empty unless the
    /// simulator itself is broken).
    pub fn audit(&mut self, now_ms: i64) -> serde_json::Value {
        self.settle(now_ms);
        let mut by_otn: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        let mut by_refund: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        let mut by_payment: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
        let mut refunds = Vec::new();
        let (mut succeeded, mut amount) = (0u64, 0u64);
        for key in &self.order {
            let Some(r) = self.refunds.get(key) else { continue };
            let scoped = by_refund.entry(format!("{}/{}", r.app_code, r.out_trade_no)).or_default();
            scoped.0 += 1;
            if r.state == RefundState::Succeeded {
                scoped.1 += r.txamt;
            }
            let e = by_otn.entry(r.out_trade_no.clone()).or_default();
            e.0 += 1;
            let pe = by_payment.entry(r.orig_syssn.clone()).or_default();
            pe.2 += 1;
            if r.state == RefundState::Succeeded {
                e.1 += r.txamt;
                pe.1 += r.txamt;
                succeeded += 1;
                amount += r.txamt;
            }
            refunds.push(serde_json::json!({
                "app_code": r.app_code, "out_trade_no": r.out_trade_no, "syssn": r.syssn,
                "orig_syssn": r.orig_syssn, "txamt": r.txamt, "state": r.state, "respcd": r.respcd,
                "txdtm": r.txdtm, "sysdtm": r.sysdtm.to_string(),
            }));
        }
        let mut violations = Vec::new();
        for (key, (count, _)) in &by_refund {
            if *count > 1 {
                violations.push(format!("out_trade_no {key} recorded {count} times"));
            }
        }
        let by_payment: BTreeMap<String, serde_json::Value> = by_payment
            .into_iter()
            .map(|(syssn, (_, refunded, count))| {
                let paid = self.payments.get(&syssn).map_or(0, |p| p.seed.txamt);
                if refunded > paid {
                    violations.push(format!("payment {syssn} refunded {refunded} of {paid}"));
                }
                (syssn, serde_json::json!({"paid": paid, "refunded": refunded, "refunds": count}))
            })
            .collect();
        let by_otn: BTreeMap<String, serde_json::Value> = by_otn
            .into_iter()
            .map(|(otn, (count, refunded))| (otn, serde_json::json!({"records": count, "refunded": refunded})))
            .collect();
        let by_refund: BTreeMap<String, serde_json::Value> = by_refund
            .into_iter()
            .map(|(key, (count, refunded))| (key, serde_json::json!({"records": count, "refunded": refunded})))
            .collect();
        serde_json::json!({
            "refunds": refunds,
            "by_out_trade_no": by_otn,
            "by_refund": by_refund,
            "by_payment": by_payment,
            "totals": {"recorded": self.order.len(), "succeeded": succeeded, "refunded_amount": amount},
            "violations": violations,
        })
    }
}
