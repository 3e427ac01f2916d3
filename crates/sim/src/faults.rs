//! Fault injection: what can go wrong between a worker and QFPay, each as a probability or a
//! duration, settable at start (`qfpay-sim --fault-…`) and at runtime (`POST /_sim/faults`).

use serde::{Deserialize, Serialize};

/// Every fault the simulator can inject. Probabilities are in `0.0..=1.0`, drawn independently per
/// request from a seeded generator, so a run with the same seed and the same requests repeats.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Added to every answer, in milliseconds.
    pub latency_ms: u64,
    /// Refund and enquiry: answer HTTP 500 *before* applying anything.
    pub error_5xx: f64,
    /// Refund: apply it, then close the connection without answering.
    pub drop_after_apply: f64,
    /// Refund: apply it, then hold the answer for `hang_ms` (set it past the client's timeout).
    pub hang_after_apply: f64,
    pub hang_ms: u64,
    /// Refund: accept it as processing (`1145`); it turns final `processing_ms` later.
    pub processing: f64,
    pub processing_ms: u64,
    /// Share of processing refunds that end failed (with `processing_fail_code`) instead of succeeding.
    pub processing_fail: f64,
    pub processing_fail_code: String,
    /// Refund and enquiry: HTTP 429 Too Many Requests, nothing processed.
    pub rate_limit_429: f64,
    /// Refund: `1269` (today's unsettled amount too small), nothing applied.
    pub code_1269: f64,
    /// Enquiry: HTTP 500.
    pub enquiry_5xx: f64,
    /// Enquiries show a refund only this long after it was recorded (QFPay's records lag, API §8.5).
    pub visibility_lag_ms: u64,
    /// Every new request waits, connection open, until this is switched off again (a stalled QFPay).
    pub paused: bool,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            latency_ms: 0,
            error_5xx: 0.0,
            drop_after_apply: 0.0,
            hang_after_apply: 0.0,
            hang_ms: 30_000,
            processing: 0.0,
            processing_ms: 2_000,
            processing_fail: 0.0,
            processing_fail_code: "1155".into(),
            rate_limit_429: 0.0,
            code_1269: 0.0,
            enquiry_5xx: 0.0,
            visibility_lag_ms: 0,
            paused: false,
        }
    }
}

impl Faults {
    /// Checks every probability is a number in `0..=1` and the failure code is four digits.
    pub fn validate(&self) -> Result<(), String> {
        for (name, p) in [
            ("error_5xx", self.error_5xx),
            ("drop_after_apply", self.drop_after_apply),
            ("hang_after_apply", self.hang_after_apply),
            ("processing", self.processing),
            ("processing_fail", self.processing_fail),
            ("rate_limit_429", self.rate_limit_429),
            ("code_1269", self.code_1269),
            ("enquiry_5xx", self.enquiry_5xx),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(format!("{name} must be a probability between 0 and 1 (got {p})"));
            }
        }
        let code = &self.processing_fail_code;
        if code.len() != 4 || !code.bytes().all(|b| b.is_ascii_digit()) || code == "0000" {
            return Err(format!("processing_fail_code must be a four-digit failure code (got {code:?})"));
        }
        Ok(())
    }
}

/// SplitMix64: tiny, fast, seedable; good enough to draw fault coin flips.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform draw in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.unit() < p
    }

    /// A uniform integer in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chance_matches_its_probability() {
        let mut rng = Rng::new(7);
        let hits = (0..100_000).filter(|_| rng.chance(0.2)).count();
        assert!((19_000..21_000).contains(&hits), "{hits}");
        assert!(!(0..1000).any(|_| rng.chance(0.0)));
        assert!((0..1000).all(|_| rng.chance(1.0)));
    }

    #[test]
    fn validation_names_the_bad_field() {
        let f = Faults { processing: 1.5, ..Faults::default() };
        assert!(f.validate().unwrap_err().contains("processing"));
        let f = Faults { processing_fail_code: "0000".into(), ..Faults::default() };
        assert!(f.validate().unwrap_err().contains("processing_fail_code"));
        assert!(Faults::default().validate().is_ok());
    }
}
