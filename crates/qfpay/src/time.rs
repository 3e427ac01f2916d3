//! QFPay timestamps (`YYYY-MM-DD hh:mm:ss`, 24-hour clock, merchant time — UTC+8 by default) and
//! the nightly 23:30–00:30 window in which refunds are refused (`1265`, API §9).
//!
//! The calendar arithmetic is Howard Hinnant's days-from-civil algorithm: a dozen lines, exact for
//! the proleptic Gregorian calendar, and no date-time crate to pull in.

use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

/// UTC+8, QFPay's default zone for `txdtm` (HK / Beijing time).
pub const DEFAULT_OFFSET_SECS: i32 = 8 * 3600;

/// A wall-clock timestamp in QFPay's format. It carries no zone: the zone is a merchant setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Txdtm {
    year: i32,
    month: u8,
    day: u8,
    hour: u8,
    minute: u8,
    second: u8,
}

/// Why a timestamp string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected `YYYY-MM-DD hh:mm:ss` (24-hour clock), got {0:?}")]
pub struct TxdtmError(pub String);

impl Txdtm {
    /// The wall-clock time at `unix_secs` in the zone `offset_secs` east of UTC.
    pub fn from_unix(unix_secs: i64, offset_secs: i32) -> Self {
        let local = unix_secs + i64::from(offset_secs);
        let days = local.div_euclid(86_400);
        let sod = local.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        Self { year, month, day, hour: (sod / 3600) as u8, minute: (sod % 3600 / 60) as u8, second: (sod % 60) as u8 }
    }

    /// Now, in the given zone.
    pub fn now(offset_secs: i32) -> Self {
        Self::from_unix(unix_now(), offset_secs)
    }

    /// Seconds since the epoch, reading this wall-clock time in the zone `offset_secs`.
    pub fn to_unix(self, offset_secs: i32) -> i64 {
        days_from_civil(self.year, self.month, self.day) * 86_400
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second)
            - i64::from(offset_secs)
    }

    /// Minutes since local midnight.
    pub fn minute_of_day(self) -> u16 {
        u16::from(self.hour) * 60 + u16::from(self.minute)
    }
}

impl fmt::Display for Txdtm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

impl FromStr for Txdtm {
    type Err = TxdtmError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || TxdtmError(s.chars().take(40).collect());
        let b = s.as_bytes();
        if b.len() != 19 || b[4] != b'-' || b[7] != b'-' || b[10] != b' ' || b[13] != b':' || b[16] != b':' {
            return Err(err());
        }
        let num = |r: std::ops::Range<usize>| -> Result<u32, TxdtmError> {
            let part = &s[r];
            if part.bytes().all(|c| c.is_ascii_digit()) { part.parse().map_err(|_| err()) } else { Err(err()) }
        };
        let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year as i32, month as u8) as u32 {
            return Err(err());
        }
        if hour > 23 || minute > 59 || second > 59 {
            return Err(err());
        }
        Ok(Self {
            year: year as i32,
            month: month as u8,
            day: day as u8,
            hour: hour as u8,
            minute: minute as u8,
            second: second as u8,
        })
    }
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Milliseconds since the Unix epoch.
pub fn unix_now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// QFPay refuses refunds from 23:30 to 00:30 merchant time (API §9).
pub fn in_refund_blackout(local: Txdtm) -> bool {
    let m = local.minute_of_day();
    !(30..23 * 60 + 30).contains(&m)
}

/// The wider window (23:25–00:35) inside which a `1265` is read as "the nightly window, retry
/// later" rather than "not refundable" (API §7.1, 1265): clocks disagree by a few minutes.
pub fn near_refund_blackout(local: Txdtm) -> bool {
    let m = local.minute_of_day();
    !(35..23 * 60 + 25).contains(&m)
}

/// The first moment at or after `unix_secs` that is outside the 23:25–00:35 band, in the zone
/// `offset_secs`: where a deferred submit should be scheduled.
pub fn after_refund_blackout(unix_secs: i64, offset_secs: i32) -> i64 {
    let local = Txdtm::from_unix(unix_secs, offset_secs);
    if !near_refund_blackout(local) {
        return unix_secs;
    }
    let sod = i64::from(local.minute_of_day()) * 60 + i64::from(local.second);
    let target = 35 * 60; // 00:35 local
    if sod < target { unix_secs + (target - sod) } else { unix_secs + (86_400 - sod) + target }
}

fn is_leap(y: i32) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i32, m: u8) -> u8 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(y) => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 of a date (proleptic Gregorian; Howard Hinnant's algorithm).
pub fn days_from_civil(y: i32, m: u8, d: u8) -> i64 {
    let y = i64::from(y) - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date (year, month, day) of a day number since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i32, u8, u8) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y as i32, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants_in_utc_plus_8() {
        // 2024-07-05 02:14:00 UTC
        assert_eq!(Txdtm::from_unix(1_720_145_640, DEFAULT_OFFSET_SECS).to_string(), "2024-07-05 10:14:00");
        assert_eq!(Txdtm::from_unix(0, 0).to_string(), "1970-01-01 00:00:00");
        assert_eq!(Txdtm::from_unix(951_782_400, 0).to_string(), "2000-02-29 00:00:00");
    }

    #[test]
    fn parse_and_to_unix_round_trip_over_many_days() {
        let mut t = 0i64;
        while t < 4_000_000_000 {
            let x = Txdtm::from_unix(t, DEFAULT_OFFSET_SECS);
            let back: Txdtm = x.to_string().parse().unwrap();
            assert_eq!(back, x);
            assert_eq!(back.to_unix(DEFAULT_OFFSET_SECS), t);
            t += 86_400 * 17 + 3_601;
        }
    }

    #[test]
    fn rejects_twelve_hour_and_malformed_times() {
        for bad in [
            "2024-07-05 3:14:00",
            "2024-07-05T10:14:00",
            "2024-13-05 10:14:00",
            "2023-02-29 10:14:00",
            "2024-07-05 24:00:00",
            "2024-07-05 10:14:00 PM",
            "２024-07-05 10:14:00",
            "",
        ] {
            assert!(bad.parse::<Txdtm>().is_err(), "{bad}");
        }
        assert!("2024-02-29 23:59:59".parse::<Txdtm>().is_ok());
    }

    #[test]
    fn blackout_is_23_30_to_00_30() {
        let at = |s: &str| s.parse::<Txdtm>().unwrap();
        assert!(!in_refund_blackout(at("2024-07-05 23:29:59")));
        assert!(in_refund_blackout(at("2024-07-05 23:30:00")));
        assert!(in_refund_blackout(at("2024-07-06 00:29:59")));
        assert!(!in_refund_blackout(at("2024-07-06 00:30:00")));
    }

    #[test]
    fn deferral_lands_at_00_35_local() {
        let off = DEFAULT_OFFSET_SECS;
        for s in ["2024-07-05 23:26:00", "2024-07-05 23:59:59", "2024-07-06 00:00:00", "2024-07-06 00:34:59"] {
            let t = s.parse::<Txdtm>().unwrap().to_unix(off);
            let next = after_refund_blackout(t, off);
            assert_eq!(Txdtm::from_unix(next, off).to_string(), "2024-07-06 00:35:00", "{s}");
        }
        let noon = "2024-07-05 12:00:00".parse::<Txdtm>().unwrap().to_unix(off);
        assert_eq!(after_refund_blackout(noon, off), noon);
    }
}
