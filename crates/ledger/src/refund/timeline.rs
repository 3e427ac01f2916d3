//! A refund's timeline: one entry per transition, kept beside its record (`<prefix>:t:<id>`, a
//! list the scripts append to, see `store/common.lua`) and archived with it, so the history of a
//! refund outlives the outcome stream, which is trimmed after days.

use serde::{Deserialize, Serialize};

/// One transition: the state entered, when, and QFPay's last word as it then stood.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TimelineEntry {
    /// When (ms since the epoch, Redis' clock).
    pub at: i64,
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub respcd: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resperr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_syssn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What went wrong with the attempt, if anything (a timeout, a refused connection, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl TimelineEntry {
    /// Reads one list entry (its fields joined by the unit separator); `None` for one that is not
    /// an entry.
    pub fn parse(raw: &str) -> Option<Self> {
        let mut parts = raw.split('\u{1f}');
        let at = parts.next()?.parse().ok()?;
        let state = parts.next()?.to_owned();
        let mut text = || parts.next().filter(|v| !v.is_empty()).map(str::to_owned);
        Some(Self {
            at,
            state,
            respcd: text(),
            resperr: text(),
            refund_syssn: text(),
            reason: text(),
            last_error: text(),
        })
    }
}

/// The mark a text stored in the record ends with when it was cut (the whole text is in the
/// timeline entry of the transition that wrote it).
pub const CUT: char = '…';

/// Puts back, in `rec`, the whole `reason`, `resperr` and `last_error` where the record keeps
/// only their first bytes: from the latest timeline entry whose text starts with what it keeps.
pub fn restore_texts(rec: &mut crate::Record, timeline: &[TimelineEntry]) {
    fn restore(kept: &mut Option<String>, full: impl Iterator<Item = Option<String>>) {
        let Some(prefix) = kept.as_deref().and_then(|k| k.strip_suffix(CUT)) else { return };
        // The timeline keeps texts with control characters as spaces (see `one_line` in
        // common.lua); later entries may carry the cut copy itself: never that one.
        let prefix: String = prefix.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
        if let Some(whole) =
            full.flatten().find(|t| !t.ends_with(CUT) && t.starts_with(&prefix) && t.len() > prefix.len())
        {
            *kept = Some(whole);
        }
    }
    restore(&mut rec.reason, timeline.iter().rev().map(|e| e.reason.clone()));
    restore(&mut rec.resperr, timeline.iter().rev().map(|e| e.resperr.clone()));
    restore(&mut rec.last_error, timeline.iter().rev().map(|e| e.last_error.clone()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_read_back_with_their_empty_fields_absent() {
        let e = TimelineEntry::parse("1700000000000\u{1f}succeeded\u{1f}0000\u{1f}\u{1f}R1\u{1f}").unwrap();
        assert_eq!(e.at, 1_700_000_000_000);
        assert_eq!(e.state, "succeeded");
        assert_eq!(e.respcd.as_deref(), Some("0000"));
        assert_eq!((e.resperr, e.refund_syssn.as_deref(), e.reason, e.last_error), (None, Some("R1"), None, None));
        assert_eq!(TimelineEntry::parse("1\u{1f}queued").unwrap().state, "queued");
        assert!(TimelineEntry::parse("not a time\u{1f}queued").is_none());
    }
}
