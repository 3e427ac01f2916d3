//! The `respcd` catalogue (API §7.1 current list, §7.2 codes outside it) and how a refund worker
//! must read each code. Data, not `match` arms scattered through the worker: one table, one test
//! that walks it.

use crate::time::{Txdtm, near_refund_blackout};

/// What a code means for a refund that was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// The refund is done.
    Success,
    /// Not final or outcome unknown: never resubmit; enquire with backoff.
    InProgress,
    /// Rejected for a transient reason, no money moved. Enquire first (to rule out an earlier
    /// success), then resubmit with the same `out_trade_no`, at most `cap` times when QFPay's
    /// advice sets a cap (otherwise the configured budget applies).
    Retryable { cap: Option<u32> },
    /// Will not succeed by retrying. With `reconcile`, the code may be the echo of our own earlier,
    /// successful attempt: enquire once before declaring failure.
    FinalFailure { reconcile: bool },
    /// Our request or account set-up is wrong: stop this merchant's queue and alert.
    ConfigError,
    /// QFPay's notes say a person must look (reversal error, protocol failure, business error):
    /// neither a success nor a failure may be assumed.
    ManualReview,
    /// Not in the catalogue. API §7.2: treat as in progress for one enquiry round; if that does not
    /// settle it, a human must look (never read it as success or failure by assumption).
    Unknown,
}

/// Could the refund this answer refuses have been applied all the same? Decides whether a
/// resend or a failure may follow the answer directly, or only after an enquiry rules out that
/// the attempt took effect (a wrong `failed` is a double refund one step later: the producer
/// refunds again under a new id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Refused at QFPay's door (maintenance, validation, limits checked before anything moves):
    /// no money moved.
    No,
    /// The error arose where the refund may already have been acted on (the bank, the wallet
    /// channel, a slow network, an internal error): enquire before any resend or failure.
    Maybe,
}

/// One catalogued code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeInfo {
    pub code: &'static str,
    pub meaning: &'static str,
    pub class: Class,
    /// Shortest sensible wait before a retry for [`Class::Retryable`] codes, in seconds
    /// (0: the configured backoff decides).
    pub min_retry_delay_s: u32,
    /// In QFPay's current (2026) official list, rather than a legacy or observed code.
    pub official: bool,
    /// Whether the refund may have been applied despite this answer.
    pub applied: Applied,
}

const fn c(code: &'static str, meaning: &'static str, class: Class, official: bool) -> CodeInfo {
    // Success, processing, unknown and review codes leave the outcome open by their nature.
    let applied = match class {
        Class::Success | Class::InProgress | Class::ManualReview | Class::Unknown => Applied::Maybe,
        _ => Applied::No,
    };
    CodeInfo { code, meaning, class, min_retry_delay_s: 0, official, applied }
}

const fn retryable(
    code: &'static str,
    meaning: &'static str,
    cap: Option<u32>,
    delay: u32,
    official: bool,
    applied: Applied,
) -> CodeInfo {
    CodeInfo { code, meaning, class: Class::Retryable { cap }, min_retry_delay_s: delay, official, applied }
}

/// A retryable code refused at the door: a plain resend is safe.
const fn r(code: &'static str, meaning: &'static str, cap: Option<u32>, delay: u32, official: bool) -> CodeInfo {
    retryable(code, meaning, cap, delay, official, Applied::No)
}

/// A retryable code raised where the refund may have been acted on: enquire, then resend.
const fn rm(code: &'static str, meaning: &'static str, cap: Option<u32>, delay: u32, official: bool) -> CodeInfo {
    retryable(code, meaning, cap, delay, official, Applied::Maybe)
}

use Class::{ConfigError as CFG, InProgress as WIP, Success as OK};
const FAIL: Class = Class::FinalFailure { reconcile: false };
const FAIL_RECONCILE: Class = Class::FinalFailure { reconcile: true };
const REVIEW: Class = Class::ManualReview;

/// Every code of API §7.1 (official) and §7.2 (legacy / observed), in code order.
pub static CATALOGUE: &[CodeInfo] = &[
    c("0000", "success", OK, true),
    r("1100", "system under maintenance", None, 300, true),
    c("1101", "reversal error (manual review)", REVIEW, true),
    c("1102", "duplicate request (out_trade_no already used): resolve by enquiry", WIP, true),
    c("1103", "request format error", CFG, true),
    c("1104", "request parameter error", CFG, true),
    c("1105", "device not activated", CFG, true),
    c("1106", "invalid device", CFG, true),
    c("1107", "device not allowed", CFG, true),
    c("1108", "signature error", CFG, true),
    c("1109", "crypto configuration error", CFG, false),
    r("1111", "service unavailable", Some(3), 0, false),
    r("1112", "service unavailable", Some(3), 0, false),
    c("1113", "user/account configuration error", CFG, false),
    c("1114", "user/account configuration error", CFG, false),
    c("1115", "account configuration error", CFG, false),
    c("1116", "merchant binding error", CFG, false),
    c("1117", "certificate configuration error", CFG, false),
    c("1118", "risk/limit rejection", FAIL, false),
    c("1119", "risk/limit rejection", FAIL, false),
    c("1120", "risk/limit rejection", FAIL, false),
    c("1121", "risk/limit rejection", FAIL, false),
    c("1122", "mismatch", FAIL, false),
    c("1123", "mismatch", FAIL, false),
    r("1124", "same-day card refund is a void and must be for the full amount", Some(2), 86_400, false),
    c("1125", "transaction already refunded", FAIL_RECONCILE, true),
    c("1126", "risk/limit rejection", FAIL, false),
    rm("1127", "database unavailable", Some(3), 0, false),
    rm("1128", "channel unavailable", Some(3), 0, false),
    c("1130", "risk/limit rejection", FAIL, false),
    rm("1131", "internal error", Some(3), 0, false),
    c("1134", "pre-auth error", FAIL, false),
    c("1135", "account configuration error", CFG, false),
    c("1136", "transaction does not exist or is not operable", FAIL, true),
    c("1138", "merchant configuration error", CFG, false),
    c("1140", "merchant configuration error", CFG, false),
    c("1142", "order already closed", FAIL_RECONCILE, true),
    c("1143", "processing (not yet paid / user entering password)", WIP, true),
    c("1144", "protocol failure (manual review)", REVIEW, false),
    c("1145", "processing, please wait", WIP, true),
    c("1146", "business error (manual review)", REVIEW, false),
    rm("1147", "WeChat Pay transaction error", Some(3), 0, true),
    c("1150", "T0 settlement does not support cancellation", FAIL, true),
    c("1151", "risk/limit rejection", FAIL, false),
    c("1152", "risk/limit rejection", FAIL, false),
    c("1153", "risk/limit rejection", FAIL, false),
    rm("1154", "channel unavailable", Some(3), 0, false),
    c("1155", "refund request denied", FAIL, true),
    c("1161", "result unknown, verify by query", WIP, false),
    rm("1170", "channel connection failure", Some(3), 0, false),
    c("1180", "route reset, needs reconfiguration", CFG, false),
    c("1181", "order expired", FAIL, true),
    c("1201", "insufficient balance (payer)", FAIL, true),
    c("1202", "payment code wrong or expired", FAIL, true),
    c("1203", "merchant account error", CFG, true),
    rm("1204", "bank error", Some(3), 0, true),
    rm("1205", "transaction failed, try later", None, 60, true),
    c("1212", "use UnionPay overseas code", FAIL, true),
    c("1241", "store missing or wrong status", CFG, true),
    c("1242", "store mis-configured", CFG, true),
    c("1243", "store disabled", CFG, true),
    c("1250", "transaction forbidden, contact QFPay", FAIL, true),
    c("1251", "store configuration being fixed", CFG, true),
    rm("1252", "system error when placing request", None, 0, true),
    rm("1254", "problem being resolved", None, 60, true),
    c("1260", "order already paid", FAIL, true),
    c("1261", "order not paid", FAIL, true),
    c("1262", "order already refunded", FAIL_RECONCILE, true),
    c("1263", "order cancelled", FAIL, true),
    c("1264", "order closed", FAIL_RECONCILE, true),
    // 1265 depends on when it was submitted: see `classify`. Outside the nightly window it is final.
    c("1265", "not refundable now (23:30-00:30 window) or not refundable (promotion, refund period)", FAIL, true),
    c("1266", "amount wrong", FAIL, true),
    c("1267", "order information mismatch", FAIL, true),
    c("1268", "order does not exist", FAIL, true),
    r("1269", "today's unsettled amount is too small to fund the refund", Some(12), 6 * 3600, true),
    c("1270", "currency does not support partial refund", FAIL, true),
    c("1271", "transaction does not support partial refund", FAIL, true),
    c("1272", "refund exceeds the refundable remainder", FAIL_RECONCILE, true),
    c("1294", "prohibited by bank (possible non-compliance)", FAIL, true),
    c("1295", "slow network, waiting for response", WIP, true),
    rm("1296", "slow network, try again later", None, 0, true),
    rm("1297", "bank system busy", Some(3), 0, true),
    c("1298", "slow network; if paid, do not repeat; check later", WIP, true),
    c("2001", "merchant configuration error", CFG, false),
    c("2002", "merchant configuration error", CFG, false),
    c("2003", "signature failure", CFG, false),
    c("2004", "risk/limit rejection", FAIL, false),
    c("2005", "customer payment code wrong or expired", FAIL, true),
    c("2006", "risk/limit rejection", FAIL, false),
    c("2007", "risk/limit rejection", FAIL, false),
    c("2008", "pre-auth error", FAIL, false),
    rm("2009", "channel connection failure", Some(3), 0, false),
    c("2010", "unknown error while talking to the channel", WIP, false),
    c("2011", "transaction serial number repeated: resolve by enquiry", WIP, true),
    c("2012", "certificate configuration error", CFG, false),
    c("2999", "undocumented; unknown, go query", WIP, false),
];

/// The catalogue entry of `code`, if it has one.
pub fn lookup(code: &str) -> Option<&'static CodeInfo> {
    CATALOGUE.binary_search_by(|e| e.code.cmp(code)).ok().map(|i| &CATALOGUE[i])
}

/// How a refund worker must read `code`.
///
/// `submitted_local` is when the refund was submitted, in merchant time: `1265` inside the nightly
/// 23:30–00:30 window (with five minutes' slack each side) is retryable after it; otherwise it is
/// final (refund period exceeded, promotion). Without a submission time it is final.
pub fn classify(code: &str, submitted_local: Option<Txdtm>) -> Class {
    let code = code.trim();
    if code == "1265" && submitted_local.is_some_and(near_refund_blackout) {
        return Class::Retryable { cap: None };
    }
    lookup(code).map_or(Class::Unknown, |e| e.class)
}

/// Whether a refund refused with `code` may have been applied all the same (unknown codes: maybe).
pub fn may_have_applied(code: &str) -> bool {
    lookup(code.trim()).is_none_or(|e| e.applied == Applied::Maybe)
}

/// `1102` / `2011`: QFPay says our `out_trade_no` is taken. Resolve by enquiry: found → follow that
/// record; not found → the id clashes with another payment or refund, which only a human can fix.
pub fn is_duplicate_code(code: &str) -> bool {
    matches!(code.trim(), "1102" | "2011")
}

/// Codes that mean "still being evaluated" on an enquiry record (API §5.3).
pub fn is_processing_record_code(code: &str) -> bool {
    matches!(code.trim(), "1143" | "1145" | "1298")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_is_sorted_and_unique_so_lookup_works() {
        for w in CATALOGUE.windows(2) {
            assert!(w[0].code < w[1].code, "{} then {}", w[0].code, w[1].code);
        }
        for e in CATALOGUE {
            assert_eq!(e.code.len(), 4);
            assert_eq!(lookup(e.code), Some(e));
        }
    }

    #[test]
    fn official_list_has_52_codes() {
        assert_eq!(CATALOGUE.iter().filter(|e| e.official).count(), 52);
    }

    #[test]
    fn unknown_codes_are_unknown_not_guessed() {
        for code in ["9999", "", "abcd", "00000", "1264x"] {
            assert_eq!(classify(code, None), Class::Unknown, "{code}");
        }
    }

    #[test]
    fn code_1265_depends_on_submission_time() {
        let at = |s: &str| Some(s.parse::<Txdtm>().unwrap());
        assert_eq!(classify("1265", at("2024-07-05 23:40:00")), Class::Retryable { cap: None });
        assert_eq!(classify("1265", at("2024-07-06 00:33:00")), Class::Retryable { cap: None });
        assert_eq!(classify("1265", at("2024-07-05 12:00:00")), Class::FinalFailure { reconcile: false });
        assert_eq!(classify("1265", None), Class::FinalFailure { reconcile: false });
    }
}
