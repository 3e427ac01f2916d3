//! Gauges every `/metrics` (API and workers) adds to [`crate::Stats::to_prometheus`]: the merchants
//! nobody serves (the webhook backlog is part of [`crate::Stats::to_prometheus`] itself).

use crate::store::merchants::Unserved;

/// Appends, when read, the served/unserved merchant gauges.
pub fn render_extra(merchants: Option<(&[String], &Unserved)>, out: &mut String) {
    if let Some((served, unserved)) = merchants {
        unserved.to_prometheus(served, out);
    }
}
