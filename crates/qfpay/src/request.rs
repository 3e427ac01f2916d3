//! Validated requests. Parse, don't validate: a [`RefundRequest`] that exists is one QFPay can be
//! sent, and every refusal is a [`FieldError`] naming the field and the rule.

use crate::params::Params;
use crate::time::Txdtm;

/// Largest refund amount: `txamt` is `Int(11)` in minor units (API §2).
pub const MAX_TXAMT: u64 = 99_999_999_999;
/// Largest `page_size` of an enquiry (API §5.1).
pub const MAX_PAGE_SIZE: u32 = 100;

/// A refused input: which field, and which rule it broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {rule}")]
pub struct FieldError {
    pub field: &'static str,
    pub rule: String,
}

impl FieldError {
    pub fn new(field: &'static str, rule: impl Into<String>) -> Self {
        Self { field, rule: rule.into() }
    }
}

fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// An identifier of 1..=`max` characters of `[A-Za-z0-9_-]`: such values cannot make the signing
/// string ambiguous (no `&`, `=`, spaces, or encodings to disagree on).
pub fn validate_id(field: &'static str, value: &str, max: usize) -> Result<(), FieldError> {
    if value.is_empty() {
        return Err(FieldError::new(field, "is required and must not be empty"));
    }
    if let Some(bad) = value.chars().find(|c| !is_id_char(*c)) {
        return Err(FieldError::new(field, format!("may contain only A-Z, a-z, 0-9, '_' and '-' (found {bad:?})")));
    }
    if value.len() > max {
        return Err(FieldError::new(field, format!("must be at most {max} characters (got {})", value.len())));
    }
    Ok(())
}

/// The original payment's QFPay number: 1–128 characters of `[A-Za-z0-9_-]`.
pub fn validate_syssn(value: &str) -> Result<(), FieldError> {
    validate_id("syssn", value, 128)
}

/// The merchant's refund id: 1–128 characters of `[A-Za-z0-9_-]` (API §2, §8).
pub fn validate_out_trade_no(value: &str) -> Result<(), FieldError> {
    validate_id("out_trade_no", value, 128)
}

/// A refund amount in minor units: 1..=[`MAX_TXAMT`].
pub fn validate_txamt(field: &'static str, value: u64) -> Result<(), FieldError> {
    if value == 0 {
        return Err(FieldError::new(field, "must be a positive amount in minor units (got 0)"));
    }
    if value > MAX_TXAMT {
        return Err(FieldError::new(field, format!("must be at most {MAX_TXAMT} minor units (got {value})")));
    }
    Ok(())
}

/// Parses an amount written as decimal digits (minor units), as it arrives from CSV, JSON or a flag.
pub fn parse_txamt(field: &'static str, text: &str) -> Result<u64, FieldError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(FieldError::new(field, "is required"));
    }
    if t.starts_with('-') {
        return Err(FieldError::new(field, format!("must be positive (got {t:?})")));
    }
    if !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(FieldError::new(field, format!("must be an integer number of minor units (got {t:?})")));
    }
    let v: u64 = t
        .parse()
        .map_err(|_| FieldError::new(field, format!("must be at most {MAX_TXAMT} minor units (got {t:?})")))?;
    validate_txamt(field, v)?;
    Ok(v)
}

/// QFPay's sub-merchant id: at most 16 characters of `[A-Za-z0-9_-]`.
pub fn validate_mchid(value: &str) -> Result<(), FieldError> {
    validate_id("mchid", value, 16)
}

/// Device id: at most 40 characters, any script, no control characters.
pub fn validate_udid(value: &str) -> Result<(), FieldError> {
    let n = value.chars().count();
    if n == 0 || n > 40 {
        return Err(FieldError::new("udid", format!("must be 1 to 40 characters (got {n})")));
    }
    if value.chars().any(char::is_control) {
        return Err(FieldError::new("udid", "must not contain control characters"));
    }
    Ok(())
}

/// Zone of `txdtm`: `+HHMM` or `-HHMM`.
pub fn validate_txzone(value: &str) -> Result<(), FieldError> {
    let b = value.as_bytes();
    let ok = b.len() == 5
        && (b[0] == b'+' || b[0] == b'-')
        && b[1..].iter().all(u8::is_ascii_digit)
        && value[1..3].parse::<u8>().is_ok_and(|h| h <= 14)
        && value[3..5].parse::<u8>().is_ok_and(|m| m < 60);
    if ok { Ok(()) } else { Err(FieldError::new("txzone", format!("must look like +0800 (got {value:?})"))) }
}

fn none_if_empty(v: Option<&str>) -> Option<&str> {
    v.map(str::trim).filter(|s| !s.is_empty())
}

/// `POST /trade/v1/refund` (API §4.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundRequest {
    syssn: String,
    out_trade_no: String,
    txamt: u64,
    txdtm: Txdtm,
    mchid: Option<String>,
    udid: Option<String>,
    txzone: Option<String>,
}

impl RefundRequest {
    /// A refund of `txamt` minor units of payment `syssn`, identified by `out_trade_no`, requested
    /// at `txdtm`. Callers persist the first `txdtm`: it anchors the enquiry window later.
    pub fn new(syssn: &str, out_trade_no: &str, txamt: u64, txdtm: Txdtm) -> Result<Self, FieldError> {
        validate_syssn(syssn)?;
        validate_out_trade_no(out_trade_no)?;
        validate_txamt("txamt", txamt)?;
        Ok(Self {
            syssn: syssn.to_owned(),
            out_trade_no: out_trade_no.to_owned(),
            txamt,
            txdtm,
            mchid: None,
            udid: None,
            txzone: None,
        })
    }

    /// Sets `mchid` (sent only when QFPay issued one, API §2). Empty means none.
    pub fn with_mchid(mut self, mchid: Option<&str>) -> Result<Self, FieldError> {
        self.mchid = none_if_empty(mchid).map(|m| validate_mchid(m).map(|()| m.to_owned())).transpose()?;
        Ok(self)
    }

    /// Sets the device id. Empty means none.
    pub fn with_udid(mut self, udid: Option<&str>) -> Result<Self, FieldError> {
        self.udid = none_if_empty(udid).map(|u| validate_udid(u).map(|()| u.to_owned())).transpose()?;
        Ok(self)
    }

    /// Sets the zone of `txdtm` (QFPay assumes `+0800` without it).
    pub fn with_txzone(mut self, txzone: Option<&str>) -> Result<Self, FieldError> {
        self.txzone = none_if_empty(txzone).map(|z| validate_txzone(z).map(|()| z.to_owned())).transpose()?;
        Ok(self)
    }

    pub fn syssn(&self) -> &str {
        &self.syssn
    }
    pub fn out_trade_no(&self) -> &str {
        &self.out_trade_no
    }
    pub fn txamt(&self) -> u64 {
        self.txamt
    }
    pub fn txdtm(&self) -> Txdtm {
        self.txdtm
    }
    pub fn mchid(&self) -> Option<&str> {
        self.mchid.as_deref()
    }

    /// The parameters exactly as signed and sent.
    pub fn params(&self) -> Params {
        let mut p = Params::new();
        p.insert("syssn", self.syssn.as_str());
        p.insert("out_trade_no", self.out_trade_no.as_str());
        p.insert("txamt", self.txamt.to_string());
        p.insert("txdtm", self.txdtm.to_string());
        p.insert_opt("mchid", self.mchid.as_deref());
        p.insert_opt("udid", self.udid.as_deref());
        p.insert_opt("txzone", self.txzone.as_deref());
        p
    }
}

/// `POST /trade/v1/query` (API §5.1). At least one of `syssn`, `out_trade_no`, or a full
/// `start_time`..`end_time` window. The worker always adds a window around its submission, because
/// without one QFPay searches only the current month.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EnquiryRequest {
    syssn: Vec<String>,
    out_trade_no: Vec<String>,
    start_time: Option<Txdtm>,
    end_time: Option<Txdtm>,
    page: Option<u32>,
    page_size: Option<u32>,
    mchid: Option<String>,
}

impl EnquiryRequest {
    /// Builds and checks an enquiry.
    pub fn new(syssn: &[&str], out_trade_no: &[&str], window: Option<(Txdtm, Txdtm)>) -> Result<Self, FieldError> {
        for s in syssn {
            validate_syssn(s)?;
        }
        for o in out_trade_no {
            validate_out_trade_no(o)?;
        }
        if let Some((start, end)) = window
            && start > end
        {
            return Err(FieldError::new("start_time", format!("must not be after end_time ({start} > {end})")));
        }
        if syssn.is_empty() && out_trade_no.is_empty() && window.is_none() {
            return Err(FieldError::new(
                "syssn",
                "an enquiry needs syssn, out_trade_no, or a start_time..end_time window",
            ));
        }
        Ok(Self {
            syssn: syssn.iter().map(|s| (*s).to_owned()).collect(),
            out_trade_no: out_trade_no.iter().map(|s| (*s).to_owned()).collect(),
            start_time: window.map(|w| w.0),
            end_time: window.map(|w| w.1),
            ..Self::default()
        })
    }

    /// Selects a page (1-based) and its size (1..=100).
    pub fn with_page(mut self, page: u32, page_size: u32) -> Result<Self, FieldError> {
        if page == 0 {
            return Err(FieldError::new("page", "pages start at 1"));
        }
        if page_size == 0 || page_size > MAX_PAGE_SIZE {
            return Err(FieldError::new("page_size", format!("must be 1 to {MAX_PAGE_SIZE} (got {page_size})")));
        }
        self.page = Some(page);
        self.page_size = Some(page_size);
        Ok(self)
    }

    pub fn with_mchid(mut self, mchid: Option<&str>) -> Result<Self, FieldError> {
        self.mchid = none_if_empty(mchid).map(|m| validate_mchid(m).map(|()| m.to_owned())).transpose()?;
        Ok(self)
    }

    /// The parameters exactly as signed and sent.
    pub fn params(&self) -> Params {
        let mut p = Params::new();
        p.insert("syssn", self.syssn.join(","));
        p.insert("out_trade_no", self.out_trade_no.join(","));
        p.insert_opt("start_time", self.start_time.map(|t| t.to_string()).as_deref());
        p.insert_opt("end_time", self.end_time.map(|t| t.to_string()).as_deref());
        p.insert_opt("page", self.page.map(|n| n.to_string()).as_deref());
        p.insert_opt("page_size", self.page_size.map(|n| n.to_string()).as_deref());
        p.insert_opt("mchid", self.mchid.as_deref());
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> Txdtm {
        "2024-07-05 10:14:00".parse().unwrap()
    }

    #[test]
    fn refund_params_match_the_documented_example() {
        let r = RefundRequest::new("20191227000200020061752831", "RF-20240705-000123", 1500, t())
            .unwrap()
            .with_mchid(Some("ZaMVg12345"))
            .unwrap();
        assert_eq!(
            crate::sign::signing_string(&r.params()),
            "mchid=ZaMVg12345&out_trade_no=RF-20240705-000123&syssn=20191227000200020061752831&txamt=1500&txdtm=2024-07-05 10:14:00"
        );
    }

    #[test]
    fn each_invalid_field_is_named() {
        let cases: Vec<(Result<RefundRequest, FieldError>, &str)> = vec![
            (RefundRequest::new("", "A", 1, t()), "syssn"),
            (RefundRequest::new(&"1".repeat(129), "A", 1, t()), "syssn"),
            (RefundRequest::new("1", "", 1, t()), "out_trade_no"),
            (RefundRequest::new("1", "RF 1", 1, t()), "out_trade_no"),
            (RefundRequest::new("1", "RFé", 1, t()), "out_trade_no"),
            (RefundRequest::new("1", &"A".repeat(129), 1, t()), "out_trade_no"),
            (RefundRequest::new("1", "A", 0, t()), "txamt"),
            (RefundRequest::new("1", "A", MAX_TXAMT + 1, t()), "txamt"),
            (RefundRequest::new("1", "A", 1, t()).and_then(|r| r.with_mchid(Some(&"m".repeat(17)))), "mchid"),
            (RefundRequest::new("1", "A", 1, t()).and_then(|r| r.with_udid(Some(&"u".repeat(41)))), "udid"),
            (RefundRequest::new("1", "A", 1, t()).and_then(|r| r.with_udid(Some("a\nb"))), "udid"),
            (RefundRequest::new("1", "A", 1, t()).and_then(|r| r.with_txzone(Some("0800"))), "txzone"),
        ];
        for (result, field) in cases {
            let err = result.unwrap_err();
            assert_eq!(err.field, field, "{err}");
        }
        assert!(RefundRequest::new("1", &"A".repeat(128), MAX_TXAMT, t()).is_ok());
        let r = RefundRequest::new("1", "A", 1, t()).unwrap().with_udid(Some(&"收".repeat(40))).unwrap();
        assert!(r.params().get("udid").is_some());
    }

    #[test]
    fn amounts_parse_strictly() {
        assert_eq!(parse_txamt("txamt", " 1500 "), Ok(1500));
        for bad in ["", "-5", "0", "1.5", "1e3", "99999999999999999999999", "100000000000", "+5", "١٢"] {
            assert_eq!(parse_txamt("txamt", bad).unwrap_err().field, "txamt", "{bad}");
        }
    }

    #[test]
    fn enquiry_needs_a_key_or_a_window() {
        assert_eq!(EnquiryRequest::new(&[], &[], None).unwrap_err().field, "syssn");
        let later: Txdtm = "2024-07-06 00:00:00".parse().unwrap();
        assert_eq!(EnquiryRequest::new(&[], &[], Some((later, t()))).unwrap_err().field, "start_time");
        let e = EnquiryRequest::new(&["1", "2"], &["A"], Some((t(), later))).unwrap().with_page(1, 100).unwrap();
        let p = e.params();
        assert_eq!(p.get("syssn"), Some("1,2"));
        assert_eq!(p.get("page_size"), Some("100"));
        assert_eq!(e.clone().with_page(1, 101).unwrap_err().field, "page_size");
        assert_eq!(e.with_page(0, 10).unwrap_err().field, "page");
    }
}
