//! The QFPay requests a step sends, built from the record, and how a step's result is described
//! in logs and metrics.

use ledger::Record;
use ledger::machine::{EnquiryResult, SubmitResult};
use qfpay::time::DEFAULT_OFFSET_SECS;
use qfpay::{EnquiryRequest, RefundLookup, RefundRequest, Txdtm};

/// The refund request for `rec`; `mchid` is the merchant's, used when the refund names none.
pub fn refund_request(rec: &Record, mchid: Option<&str>) -> Result<RefundRequest, String> {
    let at: Txdtm = rec.txdtm.as_deref().unwrap_or("").parse().map_err(|e| format!("txdtm: {e}"))?;
    RefundRequest::new(&rec.syssn, &rec.out_trade_no, rec.txamt, at)
        .and_then(|r| r.with_mchid(rec.mchid.as_deref().or(mchid)))
        .and_then(|r| r.with_udid(rec.udid.as_deref()))
        .map_err(|e| e.to_string())
}

/// The enquiry of the payment `syssn` itself (its amount, or whether QFPay knows it at all).
///
/// QFPay's `syssn` begins with the payment's date (`YYYYMMDD…`). QFPay's documents disagree on
/// whether a `syssn` enquiry still searches only the current month ("`start_time` required for
/// cross-month queries" against "ignored when `syssn` is given"), so where the date can be read,
/// the window is sent from the day before it to tomorrow: a "not found" then covers the payment's
/// own date. A window QFPay refuses is an answer that settles nothing (enquired again, reviewed at
/// the maximum age), never a "not found".
pub fn payment_enquiry(syssn: &str, mchid: Option<&str>, now_ms: i64) -> Result<EnquiryRequest, String> {
    let window = payment_date(syssn).map(|day| {
        let from = Txdtm::from_unix(day - 86_400, DEFAULT_OFFSET_SECS);
        let to = Txdtm::from_unix(now_ms / 1000 + 86_400, DEFAULT_OFFSET_SECS);
        (from, to)
    });
    EnquiryRequest::new(&[syssn], &[], window)
        .and_then(|r| r.with_page(1, 100))
        .and_then(|r| r.with_mchid(mchid))
        .map_err(|e| e.to_string())
}

/// The start of the payment's day (unix seconds, merchant time) from a `syssn` that begins with a
/// plausible `YYYYMMDD`.
fn payment_date(syssn: &str) -> Option<i64> {
    let d = syssn.get(..8)?;
    let at: Txdtm = format!("{}-{}-{} 00:00:00", &d[..4], &d[4..6], &d[6..8]).parse().ok()?;
    let year: i32 = d[..4].parse().ok()?;
    (2010..=2100).contains(&year).then(|| at.to_unix(DEFAULT_OFFSET_SECS))
}

/// The enquiry that finds refund `rec`: by its own `syssn` when QFPay gave one; else by
/// `out_trade_no` over a window around the first submit (without one, QFPay searches only the
/// current month, API §5.1). `mchid` is the merchant's, used when the refund names none.
pub fn enquiry_for(rec: &Record, mchid: Option<&str>, now_ms: i64) -> Result<EnquiryRequest, String> {
    let mchid = rec.mchid.as_deref().or(mchid);
    let req = if let Some(syssn) = rec.refund_syssn.as_deref() {
        EnquiryRequest::new(&[syssn], &[&rec.out_trade_no], None)
    } else {
        let submitted = rec
            .txdtm
            .as_deref()
            .and_then(|t| t.parse::<Txdtm>().ok())
            .map_or(rec.created_at / 1000, |t| t.to_unix(DEFAULT_OFFSET_SECS));
        let from = Txdtm::from_unix(submitted - 86_400, DEFAULT_OFFSET_SECS);
        let to = Txdtm::from_unix(now_ms / 1000 + 86_400, DEFAULT_OFFSET_SECS);
        EnquiryRequest::new(&[], &[&rec.out_trade_no], Some((from, to)))
    };
    req.and_then(|r| r.with_page(1, 100)).and_then(|r| r.with_mchid(mchid)).map_err(|e| e.to_string())
}

/// A metric label for QFPay's last code.
pub(crate) fn class_name(code: Option<&str>) -> &'static str {
    use qfpay::respcd::Class;
    match code.map(|c| qfpay::respcd::classify(c, None)) {
        None => "none",
        Some(Class::Success) => "success",
        Some(Class::InProgress) => "in_progress",
        Some(Class::Retryable { .. }) => "retryable",
        Some(Class::FinalFailure { .. }) => "final_failure",
        Some(Class::ConfigError) => "config_error",
        Some(Class::ManualReview) => "manual_review",
        Some(Class::Unknown) => "unknown",
    }
}

pub(crate) fn describe_submit(r: &SubmitResult) -> String {
    match r {
        SubmitResult::Answer(a) => format!("respcd {}", a.respcd()),
        SubmitResult::NotSent(e) => format!("not sent: {e}"),
        SubmitResult::Unknown(e) => format!("unknown: {e}"),
        SubmitResult::RateLimited(_) => "429".into(),
        SubmitResult::Misconfigured(e) => format!("misconfigured: {e}"),
    }
}

pub(crate) fn describe_enquiry(rec: &Record, r: &EnquiryResult) -> String {
    match r {
        EnquiryResult::Answer(a) if !a.is_ok() => format!("enquiry respcd {}", a.respcd()),
        EnquiryResult::Answer(a) => match a.refund(&rec.out_trade_no, &rec.syssn, rec.txamt) {
            RefundLookup::Succeeded(_) => "found 0000".into(),
            RefundLookup::InProgress(f) | RefundLookup::Other(f) => format!("found {}", f.respcd()),
            RefundLookup::Foreign(f) => format!("found someone else's refund {}", f.syssn.as_deref().unwrap_or("?")),
            RefundLookup::NotFound => "not found".into(),
        },
        EnquiryResult::Failed(e) => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payment_enquiry_covers_the_payment_date_its_syssn_begins_with() {
        assert!(payment_date("20191227000200020061752831").is_some());
        assert_eq!(payment_date("1000000000000000000000007"), None, "no date in it: QFPay's own rule applies");
        assert_eq!(payment_date("2019"), None);
        let now = 1_800_000_000_000;
        let dated = payment_enquiry("20191227000200020061752831", None, now).unwrap();
        let shown = format!("{dated:?}");
        assert!(shown.contains("year: 2019, month: 12, day: 26, hour: 0"), "{shown}");
        assert!(payment_enquiry("1000000000000000000000007", None, now).is_ok());
    }
}
