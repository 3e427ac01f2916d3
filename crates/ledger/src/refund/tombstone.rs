//! Tombstones: what stays in Redis of a refund archived and removed (see `store::retention`), so
//! that the same request is still answered as a duplicate with its outcome, another one under
//! the same (merchant, out_trade_no) as a conflict, and a payment's refunded total still counts.

use serde::Serialize;

use crate::refund::state::State;

/// A removed refund, as its tombstone keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Tombstone {
    pub merchant: String,
    pub out_trade_no: String,
    /// Its final state.
    pub state: State,
    /// QFPay's last `respcd` for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub respcd: Option<String>,
    /// The day (UTC, `YYYY-MM-DD`) it was archived and removed from Redis: where the archive
    /// keeps it.
    pub archived_on: String,
    /// Always true: the refund is no longer in Redis.
    pub archived: bool,
    /// The first 12 hex digits of its request's hash (what tells a duplicate from a conflict).
    #[serde(skip)]
    pub payload_hash: String,
}

/// A day number (days since 1970-01-01) in base 36, as tombstones keep it.
pub fn day36(day: i64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut n = day.max(0) as u64;
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// The day (since 1970) of `ms`.
pub fn day_of(ms: i64) -> i64 {
    ms.div_euclid(86_400_000)
}

/// `YYYY-MM-DD` of a day number (proleptic Gregorian, UTC).
pub fn date_of_day(day: i64) -> String {
    let (y, m, d) = qfpay::time::civil_from_days(day);
    format!("{y:04}-{m:02}-{d:02}")
}

impl Tombstone {
    /// Reads a refund's tombstone (`<hash12> <day36> <s|f|c> <respcd>`, see `store/tomb.lua`).
    pub fn parse(merchant: &str, out_trade_no: &str, raw: &str) -> Option<Self> {
        let mut w = raw.split(' ');
        let payload_hash = w.next()?.to_owned();
        let day = i64::from_str_radix(w.next()?, 36).ok()?;
        let state = match w.next()? {
            "s" => State::Succeeded,
            "f" => State::Failed,
            "c" => State::Cancelled,
            _ => return None,
        };
        let respcd = w.next().filter(|v| !v.is_empty()).map(str::to_owned);
        Some(Self {
            merchant: merchant.to_owned(),
            out_trade_no: out_trade_no.to_owned(),
            state,
            respcd,
            archived_on: date_of_day(day),
            archived: true,
            payload_hash,
        })
    }

    /// Whether `payload_hash` (a request's full hash) is the request this tombstone keeps.
    pub fn same_request(&self, payload_hash: &str) -> bool {
        self.payload_hash.len() == 12 && payload_hash.get(..12) == Some(self.payload_hash.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_and_dates() {
        assert_eq!(date_of_day(0), "1970-01-01");
        assert_eq!(date_of_day(day_of(1_764_633_600_000)), "2025-12-02");
        assert_eq!(date_of_day(11_016), "2000-02-29");
        assert_eq!(day36(0), "0");
        assert_eq!(i64::from_str_radix(&day36(20_789), 36).unwrap(), 20_789);
    }

    #[test]
    fn a_tombstone_reads_back() {
        let t = Tombstone::parse("m", "RF1", &format!("0123456789ab {} s 0000", day36(20_000))).unwrap();
        assert_eq!((t.state, t.respcd.as_deref(), t.archived), (State::Succeeded, Some("0000"), true));
        assert_eq!(t.archived_on, date_of_day(20_000));
        assert!(t.same_request("0123456789abffff"));
        assert!(!t.same_request("1123456789abffff"));
        assert_eq!(Tombstone::parse("m", "RF1", "0123456789ab 1 c ").unwrap().respcd, None);
        assert!(Tombstone::parse("m", "RF1", "0123456789ab 1 q 0000").is_none());
    }
}
