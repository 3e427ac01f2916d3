//! The respcd table test: every code of API §7.1 and §7.2, written out again from the document,
//! against the catalogue. A code added, dropped or re-classed on either side fails here.

#![allow(clippy::unwrap_used)]

use qfpay::respcd::{CATALOGUE, is_duplicate_code, lookup, may_have_applied};
use qfpay::{Class, classify};

const S: Class = Class::Success;
const P: Class = Class::InProgress;
const C: Class = Class::ConfigError;
const F: Class = Class::FinalFailure { reconcile: false };
const FR: Class = Class::FinalFailure { reconcile: true };
const MR: Class = Class::ManualReview;
const fn r(cap: Option<u32>) -> Class {
    Class::Retryable { cap }
}

/// (code, class for a submission outside the nightly window) — API §7.1 then §7.2.
const EXPECTED: &[(&str, Class)] = &[
    ("0000", S),
    ("1100", r(None)),
    ("1101", MR),
    ("1102", P),
    ("1103", C),
    ("1104", C),
    ("1105", C),
    ("1106", C),
    ("1107", C),
    ("1108", C),
    ("1125", FR),
    ("1136", F),
    ("1142", FR),
    ("1143", P),
    ("1145", P),
    ("1147", r(Some(3))),
    ("1150", F),
    ("1155", F),
    ("1181", F),
    ("1201", F),
    ("1202", F),
    ("1203", C),
    ("1204", r(Some(3))),
    ("1205", r(None)),
    ("1212", F),
    ("1241", C),
    ("1242", C),
    ("1243", C),
    ("1250", F),
    ("1251", C),
    ("1252", r(None)),
    ("1254", r(None)),
    ("1260", F),
    ("1261", F),
    ("1262", FR),
    ("1263", F),
    ("1264", FR),
    ("1265", F),
    ("1266", F),
    ("1267", F),
    ("1268", F),
    ("1269", r(Some(12))),
    ("1270", F),
    ("1271", F),
    ("1272", FR),
    ("1294", F),
    ("1295", P),
    ("1296", r(None)),
    ("1297", r(Some(3))),
    ("1298", P),
    ("2005", F),
    ("2011", P),
    // §7.2, outside the current list
    ("1124", r(Some(2))),
    ("1161", P),
    ("2003", C),
    ("1109", C),
    ("1113", C),
    ("1114", C),
    ("1115", C),
    ("1116", C),
    ("1117", C),
    ("1135", C),
    ("1138", C),
    ("1140", C),
    ("2001", C),
    ("2002", C),
    ("2012", C),
    ("1111", r(Some(3))),
    ("1112", r(Some(3))),
    ("1127", r(Some(3))),
    ("1128", r(Some(3))),
    ("1131", r(Some(3))),
    ("1154", r(Some(3))),
    ("1170", r(Some(3))),
    ("2009", r(Some(3))),
    ("2010", P),
    ("1180", C),
    ("1118", F),
    ("1119", F),
    ("1120", F),
    ("1121", F),
    ("1122", F),
    ("1123", F),
    ("1126", F),
    ("1130", F),
    ("1134", F),
    ("1151", F),
    ("1152", F),
    ("1153", F),
    ("2004", F),
    ("2006", F),
    ("2007", F),
    ("2008", F),
    ("1144", MR),
    ("1146", MR),
    ("2999", P),
];

#[test]
fn every_catalogued_code_has_the_documented_class() {
    let outside_window = Some("2024-07-05 12:00:00".parse().unwrap());
    for (code, class) in EXPECTED {
        assert_eq!(classify(code, outside_window), *class, "respcd {code}");
        assert!(lookup(code).is_some_and(|e| !e.meaning.is_empty()), "{code} has a meaning");
    }
    assert_eq!(EXPECTED.len(), CATALOGUE.len(), "the table and the catalogue list the same codes");
    for e in CATALOGUE {
        assert!(EXPECTED.iter().any(|(c, _)| *c == e.code), "{} is catalogued but not in the table", e.code);
    }
}

#[test]
fn the_current_official_list_is_complete() {
    let official: Vec<&str> = CATALOGUE.iter().filter(|e| e.official).map(|e| e.code).collect();
    let expected_official = &EXPECTED[..52];
    assert_eq!(official.len(), 52);
    for (code, _) in expected_official {
        assert!(official.contains(code), "{code} official");
    }
}

#[test]
fn duplicate_codes_are_resolved_by_enquiry() {
    for code in ["1102", "2011"] {
        assert!(is_duplicate_code(code));
        assert_eq!(classify(code, None), Class::InProgress);
    }
    assert!(!is_duplicate_code("1143"));
}

#[test]
fn retryable_codes_that_need_time_say_so() {
    assert!(lookup("1269").unwrap().min_retry_delay_s >= 3600);
    assert!(lookup("1124").unwrap().min_retry_delay_s >= 86_400);
    assert!(lookup("1100").unwrap().min_retry_delay_s >= 60);
}

/// The question every refusal must answer before a resend or a failure: could the refund have
/// been applied all the same? Retryable codes raised at the bank, the wallet channel or by a slow
/// network say "maybe" (enquire first); codes refused at QFPay's door say "no". Written out again
/// by hand, code by code: a code moved between the two fails here.
const MAY_HAVE_APPLIED: &[(&str, bool)] = &[
    // enquire first: the error arose after the request was taken up
    ("1296", true),
    ("1297", true),
    ("1204", true),
    ("1147", true),
    ("1298", true),
    ("1295", true),
    ("1205", true),
    ("1252", true),
    ("1254", true),
    ("1127", true),
    ("1128", true),
    ("1131", true),
    ("1154", true),
    ("1170", true),
    ("2009", true),
    ("1101", true),
    ("1144", true),
    ("1146", true),
    ("1143", true),
    ("1145", true),
    ("1102", true),
    ("2011", true),
    ("1161", true),
    ("2010", true),
    ("2999", true),
    ("9999", true), // not catalogued: never assume
    // refused at the door: nothing moved
    ("1100", false),
    ("1111", false),
    ("1112", false),
    ("1124", false),
    ("1269", false),
    ("1136", false),
    ("1266", false),
    ("1268", false),
    ("1272", false),
    ("1108", false),
    ("1155", false),
    ("1294", false),
];

#[test]
fn every_refusal_says_whether_the_refund_may_have_been_applied() {
    for (code, maybe) in MAY_HAVE_APPLIED {
        assert_eq!(may_have_applied(code), *maybe, "respcd {code}");
    }
    // Every retryable code is on one side of the question on purpose.
    for e in CATALOGUE.iter().filter(|e| matches!(e.class, Class::Retryable { .. })) {
        assert!(MAY_HAVE_APPLIED.iter().any(|(c, _)| *c == e.code), "retryable {} is not in the table", e.code);
    }
}
