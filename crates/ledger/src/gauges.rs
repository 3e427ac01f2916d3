//! Gauges every `/metrics` (API and workers) adds to [`Stats::to_prometheus`]: the webhook
//! backlog the README promises, and the merchants nobody serves.

use crate::Stats;
use crate::merchants::Unserved;

/// Appends the webhook gauges and, when read, the served/unserved merchant gauges.
pub fn render_extra(stats: &Stats, merchants: Option<(&[String], &Unserved)>, out: &mut String) {
    use std::fmt::Write as _;
    let _ = writeln!(
        out,
        "# HELP qfrefund_webhooks_failed Webhook deliveries given up (see qfrefund list --webhook-failed).\n# TYPE qfrefund_webhooks_failed gauge\nqfrefund_webhooks_failed {}",
        stats.webhooks_failed
    );
    let _ = writeln!(
        out,
        "# HELP qfrefund_webhooks_retrying Webhook deliveries waiting for a retry.\n# TYPE qfrefund_webhooks_retrying gauge\nqfrefund_webhooks_retrying {}",
        stats.webhooks_retrying
    );
    if let Some((served, unserved)) = merchants {
        unserved.to_prometheus(served, out);
    }
}
