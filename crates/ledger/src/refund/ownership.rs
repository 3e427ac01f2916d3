//! Whether an answer of QFPay's is about our refund at all. QFPay scopes `out_trade_no` per
//! merchant and an integrator's mistakes happen: an answer naming another `out_trade_no`, payment
//! or amount must never be booked as our success (nor counted against the payment).

use qfpay::RefundResponse;

use crate::refund::record::Record;

/// Why a `0000` submit answer is not ours, if it names another refund: another `out_trade_no`,
/// payment or amount.
pub fn not_ours(rec: &Record, a: &RefundResponse) -> Option<String> {
    fn given(v: &Option<String>) -> Option<&str> {
        v.as_deref().map(str::trim).filter(|v| !v.is_empty())
    }
    let otn = given(&a.out_trade_no).filter(|v| *v != rec.out_trade_no);
    let syssn = given(&a.orig_syssn).filter(|v| *v != rec.syssn);
    let txamt = given(&a.txamt).filter(|v| v.parse::<u64>().ok() != Some(rec.txamt));
    (otn.is_some() || syssn.is_some() || txamt.is_some()).then(|| {
        format!(
            "QFPay answered 0000 for another refund (out_trade_no {}, payment {}, amount {}): not booked as ours",
            otn.unwrap_or(&rec.out_trade_no),
            syssn.unwrap_or(&rec.syssn),
            txamt.map_or_else(|| rec.txamt.to_string(), str::to_owned)
        )
    })
}
