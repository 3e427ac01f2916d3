//! Backoff schedules as data. The curve is backon's exponential (the maintained successor of the
//! `backoff` crate, RUSTSEC-2025-0012); the jitter is "full jitter" (a uniform draw over the whole
//! delay, floored so a retry never comes back immediately), applied here because backon's own
//! jitter only ever *adds* up to one delay.
//!
//! Every delay is computed from counters stored on the record (`enquiries`, `retries`), so a
//! schedule survives worker restarts: there is no in-memory backoff state anywhere.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

/// The timing policy of the refund state machine. All of it is configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// First enquiry after a processing answer or an unknown outcome (QFPay: 3–5 s).
    pub enquiry_first: Duration,
    /// Later enquiries: `base · 2^(k-1)`, capped, full jitter.
    pub enquiry_base: Duration,
    pub enquiry_cap: Duration,
    /// Resubmits after a retryable rejection, a connection that never opened, or a 429.
    pub resubmit_base: Duration,
    pub resubmit_cap: Duration,
    /// How many times a retryable *code* may be answered before the refund fails.
    pub resubmit_budget: u32,
    /// Upper bound on a code's own minimum wait (`1269`: hours; `1124`: a day). `None`: as QFPay
    /// advises. Test and staging setups shorten it.
    pub code_delay_cap: Option<Duration>,
    /// "Not found" must be seen this many times, over at least `not_found_grace` since the last
    /// submit, before a resend (QFPay's records can lag, API §8.5).
    pub not_found_min: u32,
    pub not_found_grace: Duration,
    /// From creation: past it, a refund that is not final goes to `needs_review`.
    pub max_age: Duration,
    /// How long a worker owns a refund it claimed. Longer than the HTTP timeout.
    pub lease: Duration,
    /// Wait before trying again when another refund of the same payment is in flight.
    pub syssn_busy_wait: Duration,
    /// Wait before looking again at a paused merchant's refund.
    pub paused_wait: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            enquiry_first: Duration::from_secs(4),
            enquiry_base: Duration::from_secs(5),
            enquiry_cap: Duration::from_secs(300),
            resubmit_base: Duration::from_secs(1),
            resubmit_cap: Duration::from_secs(300),
            resubmit_budget: 5,
            code_delay_cap: None,
            not_found_min: 3,
            not_found_grace: Duration::from_secs(60),
            max_age: Duration::from_secs(48 * 3600),
            lease: Duration::from_secs(10),
            syssn_busy_wait: Duration::from_millis(500),
            paused_wait: Duration::from_secs(30),
        }
    }
}

/// The un-jittered `k`-th delay (k from 0) of `base · 2^k`, capped at `cap`.
pub fn curve(base: Duration, cap: Duration, k: u32) -> Duration {
    ExponentialBuilder::new()
        .with_min_delay(base)
        .with_max_delay(cap.max(base))
        .with_factor(2.0)
        .without_max_times()
        .build()
        .nth(k.min(64) as usize)
        .unwrap_or(cap)
}

/// Full jitter: `unit · delay` (`unit` uniform in `[0, 1)`), but never below `floor`.
pub fn jitter(delay: Duration, floor: Duration, unit: f64) -> Duration {
    delay.mul_f64(unit.clamp(0.0, 1.0)).max(floor.min(delay))
}

impl Policy {
    /// Delay before the next enquiry, when `enquiries` have been made so far (0 = right after the
    /// submit). The first is fixed (QFPay asks for 3–5 s); the rest follow the jittered curve.
    pub fn enquiry_delay(&self, enquiries: u32, unit: f64) -> Duration {
        if enquiries == 0 {
            return self.enquiry_first;
        }
        let d = curve(self.enquiry_base, self.enquiry_cap, enquiries - 1);
        jitter(d, self.enquiry_base / 2, unit)
    }

    /// Delay before resubmit number `attempt` (0 = the first resend).
    pub fn resubmit_delay(&self, attempt: u32, unit: f64) -> Duration {
        let d = curve(self.resubmit_base, self.resubmit_cap, attempt);
        jitter(d, self.resubmit_base / 2, unit)
    }

    /// The largest delay [`Self::enquiry_delay`] can return for `enquiries`: what tests check the
    /// observed schedule against.
    pub fn enquiry_delay_max(&self, enquiries: u32) -> Duration {
        if enquiries == 0 { self.enquiry_first } else { curve(self.enquiry_base, self.enquiry_cap, enquiries - 1) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn the_curve_doubles_then_stays_at_the_cap() {
        let got: Vec<_> = (0..8).map(|k| curve(S(5), S(60), k)).collect();
        assert_eq!(got, [S(5), S(10), S(20), S(40), S(60), S(60), S(60), S(60)]);
        assert_eq!(curve(S(5), S(60), 1_000), S(60));
        assert_eq!(curve(S(5), S(1), 3), S(5), "a cap below the base means the base");
    }

    #[test]
    fn full_jitter_spans_the_delay_above_its_floor() {
        assert_eq!(jitter(S(40), S(2), 0.0), S(2));
        assert_eq!(jitter(S(40), S(2), 0.5), S(20));
        assert!(jitter(S(40), S(2), 0.999_999) <= S(40));
        assert_eq!(jitter(S(1), S(2), 0.0), S(1), "the floor never exceeds the delay");
    }

    #[test]
    fn enquiries_start_fixed_then_follow_the_capped_curve() {
        let p = Policy::default();
        assert_eq!(p.enquiry_delay(0, 0.9), S(4));
        for k in 1..30 {
            for unit in [0.0, 0.3, 0.999] {
                let d = p.enquiry_delay(k, unit);
                assert!(d >= p.enquiry_base / 2 && d <= p.enquiry_delay_max(k), "k={k} {d:?}");
            }
        }
        assert_eq!(p.enquiry_delay_max(20), p.enquiry_cap);
    }
}
