//! QFPay's answers, read tolerantly (API §4.2, §5.2): every field optional, strings or numbers or
//! `null`, unknown fields ignored, `orig_syssn` and `origssn` both accepted, an empty string read
//! as absent. Tolerance stops where guessing would start: a body that is not a JSON object, or an
//! enquiry whose `data` is not a list, is an error — never "no records".

use serde::{Deserialize, Deserializer, Serialize};

use crate::respcd::is_processing_record_code;

/// Reads a JSON string, number or boolean as text; `null`, `""` and anything else as absent.
fn lenient<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Option::<serde_json::Value>::deserialize(d)? {
        Some(serde_json::Value::String(s)) => {
            let t = s.trim();
            if t.is_empty() {
                None
            } else if t.len() == s.len() {
                Some(s)
            } else {
                Some(t.to_owned())
            }
        }
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        Some(serde_json::Value::Bool(b)) => Some(b.to_string()),
        _ => None,
    })
}

/// The answer to `POST /trade/v1/refund`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct RefundResponse {
    #[serde(deserialize_with = "lenient")]
    pub respcd: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub resperr: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub respmsg: Option<String>,
    /// The new refund transaction's own `syssn` (null on rejection).
    #[serde(deserialize_with = "lenient")]
    pub syssn: Option<String>,
    #[serde(deserialize_with = "lenient", alias = "origssn")]
    pub orig_syssn: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub out_trade_no: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub txamt: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub txcurrcd: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub txdtm: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub sysdtm: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub paydtm: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub udid: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub chnlsn: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub cardcd: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub cash_fee: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub cash_fee_type: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub cash_refund_fee: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub cash_refund_fee_type: Option<String>,
}

/// A body that is not a usable answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("body is not a JSON object: {0}")]
    NotAnObject(String),
    #[error("answer has no respcd")]
    NoRespcd,
    #[error("enquiry `data` is not a list of records: {0}")]
    BadData(String),
}

fn parse_object<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, ParseError> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| ParseError::NotAnObject(e.to_string()))?;
    if !value.is_object() {
        return Err(ParseError::NotAnObject(format!("found {}", json_kind(&value))));
    }
    serde_json::from_value(value).map_err(|e| ParseError::BadData(e.to_string()))
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

impl RefundResponse {
    /// Parses a refund answer. It must be a JSON object with a `respcd`.
    pub fn parse(body: &[u8]) -> Result<Self, ParseError> {
        let r: Self = parse_object(body)?;
        if r.respcd.is_none() {
            return Err(ParseError::NoRespcd);
        }
        Ok(r)
    }

    pub fn respcd(&self) -> &str {
        self.respcd.as_deref().unwrap_or("")
    }
}

/// One transaction record in an enquiry answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct EnquiryRecord {
    #[serde(deserialize_with = "lenient")]
    pub syssn: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub out_trade_no: Option<String>,
    /// On refund records, the original payment's `syssn` (`origssn` on the wire, without underscore).
    #[serde(deserialize_with = "lenient", alias = "origssn")]
    pub orig_syssn: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub order_type: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub pay_type: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub txamt: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub txcurrcd: Option<String>,
    /// This transaction's own state.
    #[serde(deserialize_with = "lenient")]
    pub respcd: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub errmsg: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub cancel: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub txdtm: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub sysdtm: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub paydtm: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub udid: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub chnlsn: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub cash_fee: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub cash_fee_type: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub cash_refund_fee: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub cash_refund_fee_type: Option<String>,
}

impl EnquiryRecord {
    pub fn respcd(&self) -> &str {
        self.respcd.as_deref().unwrap_or("")
    }
}

/// The answer to `POST /trade/v1/query`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct EnquiryResponse {
    /// Whether the *enquiry call* worked (`0000`), not any transaction's state.
    #[serde(deserialize_with = "lenient")]
    pub respcd: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub resperr: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub respmsg: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub page: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub page_size: Option<String>,
    #[serde(deserialize_with = "data_list")]
    pub data: Vec<EnquiryRecord>,
}

/// `data`: absent or `null` is no records; a list is read record by record; anything else is an
/// error (reading a garbled answer as "not found" could lead to a second refund).
fn data_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<EnquiryRecord>, D::Error> {
    use serde::de::Error;
    match Option::<serde_json::Value>::deserialize(d)? {
        None | Some(serde_json::Value::Null) => Ok(Vec::new()),
        Some(serde_json::Value::Array(items)) => items
            .into_iter()
            .map(|item| {
                if item.is_object() {
                    serde_json::from_value(item).map_err(D::Error::custom)
                } else {
                    Err(D::Error::custom(format!("a record is {}", json_kind(&item))))
                }
            })
            .collect(),
        Some(other) => Err(D::Error::custom(format!("data is {}", json_kind(&other)))),
    }
}

/// What an enquiry says about one refund (API §5.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundLookup {
    /// A record of ours with `0000`: the refund is done.
    Succeeded(EnquiryRecord),
    /// A record of ours still being evaluated (`1143`/`1145`/`1298`).
    InProgress(EnquiryRecord),
    /// A record of ours with another code: classify that code.
    Other(EnquiryRecord),
    /// A refund record carries our `out_trade_no` but reverses another payment or another amount:
    /// the id clashes with someone else's refund. It says nothing about ours.
    Foreign(EnquiryRecord),
    /// No record carries our `out_trade_no`.
    NotFound,
}

impl EnquiryResponse {
    /// Parses an enquiry answer. It must be a JSON object with a `respcd`.
    pub fn parse(body: &[u8]) -> Result<Self, ParseError> {
        let r: Self = parse_object(body)?;
        if r.respcd.is_none() {
            return Err(ParseError::NoRespcd);
        }
        Ok(r)
    }

    pub fn respcd(&self) -> &str {
        self.respcd.as_deref().unwrap_or("")
    }

    /// Whether the enquiry itself worked; only then does [`Self::refund`] mean anything.
    pub fn is_ok(&self) -> bool {
        self.respcd() == "0000"
    }

    /// The state of our refund — `out_trade_no`, reversing payment `orig_syssn` by `txamt` — among
    /// the records: any success wins, then any processing record, then the first other record
    /// (several records can exist for one id, API §5.2). A record with our id whose payment or
    /// amount differs (where QFPay states them) is not ours: [`RefundLookup::Foreign`].
    pub fn refund(&self, out_trade_no: &str, orig_syssn: &str, txamt: u64) -> RefundLookup {
        let with_id = || {
            self.data.iter().filter(|r| {
                r.out_trade_no.as_deref() == Some(out_trade_no)
                    && r.order_type.as_deref().is_none_or(|t| t.eq_ignore_ascii_case("refund"))
            })
        };
        let is_ours = |r: &EnquiryRecord| {
            r.orig_syssn.as_deref().is_none_or(|s| s == orig_syssn)
                && r.txamt.as_deref().is_none_or(|a| a.parse::<u64>().is_ok_and(|a| a == txamt))
        };
        let ours = || with_id().filter(|r| is_ours(r));
        if let Some(r) = ours().find(|r| r.respcd() == "0000") {
            return RefundLookup::Succeeded(r.clone());
        }
        if let Some(r) = ours().find(|r| is_processing_record_code(r.respcd())) {
            return RefundLookup::InProgress(r.clone());
        }
        if let Some(r) = ours().next() {
            return RefundLookup::Other(r.clone());
        }
        match with_id().next() {
            Some(r) => RefundLookup::Foreign(r.clone()),
            None => RefundLookup::NotFound,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refund_answer_with_nulls_numbers_and_unknown_fields() {
        let r = RefundResponse::parse(
            br#"{"respcd":"1269","syssn":null,"txamt":null,"resperr":"not enough (1269)","new_field":{"x":1}}"#,
        )
        .unwrap();
        assert_eq!(r.respcd(), "1269");
        assert_eq!(r.syssn, None);
        let r = RefundResponse::parse(br#"{"respcd":0,"txamt":1000000,"origssn":"X","syssn":""}"#).unwrap();
        assert_eq!(r.respcd(), "0");
        assert_eq!(r.txamt.as_deref(), Some("1000000"));
        assert_eq!(r.orig_syssn.as_deref(), Some("X"));
        assert_eq!(r.syssn, None);
    }

    #[test]
    fn non_objects_and_missing_respcd_are_errors() {
        for body in [&b"<html>502</html>"[..], b"[]", b"\"0000\"", b"null", b"", b"{\"respcd\":"] {
            assert!(matches!(RefundResponse::parse(body), Err(ParseError::NotAnObject(_))), "{body:?}");
        }
        assert_eq!(RefundResponse::parse(b"{}"), Err(ParseError::NoRespcd));
        assert_eq!(RefundResponse::parse(br#"{"respcd":null}"#), Err(ParseError::NoRespcd));
    }

    #[test]
    fn enquiry_data_must_be_a_list_of_objects() {
        assert!(EnquiryResponse::parse(br#"{"respcd":"0000","data":null}"#).unwrap().data.is_empty());
        assert!(EnquiryResponse::parse(br#"{"respcd":"0000"}"#).unwrap().data.is_empty());
        for bad in [
            &br#"{"respcd":"0000","data":"x"}"#[..],
            br#"{"respcd":"0000","data":[1]}"#,
            br#"{"respcd":"0000","data":{}}"#,
        ] {
            assert!(EnquiryResponse::parse(bad).is_err());
        }
    }

    #[test]
    fn lookup_prefers_success_then_processing_and_ignores_other_ids_and_payments() {
        let body = br#"{"respcd":"0000","page":1,"page_size":"10","data":[
            {"out_trade_no":"RF1","order_type":"refund","respcd":"1145","origssn":null},
            {"out_trade_no":"RF1","order_type":"refund","respcd":"0000","syssn":"S2","origssn":"S1","txamt":"100"},
            {"out_trade_no":"RF5","order_type":"refund","respcd":"0000","syssn":"S7","origssn":"OTHER","txamt":"100"},
            {"out_trade_no":"RF6","order_type":"refund","respcd":"0000","origssn":"S1","txamt":"99"},
            {"out_trade_no":"RF2","order_type":"refund","respcd":"1264"},
            {"out_trade_no":"RF3","order_type":"payment","respcd":"0000"},
            {"out_trade_no":"RF4","respcd":"1298"}
        ]}"#;
        let e = EnquiryResponse::parse(body).unwrap();
        assert!(e.is_ok());
        assert_eq!(e.page.as_deref(), Some("1"));
        match e.refund("RF1", "S1", 100) {
            RefundLookup::Succeeded(r) => {
                assert_eq!(r.syssn.as_deref(), Some("S2"));
                assert_eq!(r.orig_syssn.as_deref(), Some("S1"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(e.refund("RF2", "S1", 100), RefundLookup::Other(r) if r.respcd() == "1264"));
        assert_eq!(e.refund("RF3", "S1", 100), RefundLookup::NotFound);
        assert!(matches!(e.refund("RF4", "S1", 100), RefundLookup::InProgress(_)));
        assert_eq!(e.refund("nope", "S1", 100), RefundLookup::NotFound);
        // Someone else's refund under our id: another payment, or another amount.
        assert!(matches!(e.refund("RF5", "S1", 100), RefundLookup::Foreign(r) if r.syssn.as_deref() == Some("S7")));
        assert!(matches!(e.refund("RF6", "S1", 100), RefundLookup::Foreign(_)));
    }
}
