//! Retention and the archive: `archive` (`QFREFUND_ARCHIVE`, `file:///path`; unset: nothing is
//! ever removed), `retention_s` (`QFREFUND_RETENTION_S`, 30 days) and `idempotency_retention_s`
//! (`QFREFUND_IDEMPOTENCY_RETENTION_S`, 400 days) and `audit_retention_s`
//! (`QFREFUND_AUDIT_RETENTION_S`, 400 days) and `summary_after_s` (`QFREFUND_SUMMARY_AFTER_S`,
//! an hour; 0: never), in `[worker]`.

use std::time::Duration;

use worker::retention::Retention;

use super::read::{env, env_num};

pub(super) fn retention(
    archive: Option<&String>,
    retention_s: Option<u64>,
    idempotency_retention_s: Option<u64>,
    audit_retention_s: Option<u64>,
    summary_after_s: Option<u64>,
) -> anyhow::Result<Retention> {
    let mut r = Retention { archive: env("QFREFUND_ARCHIVE").or_else(|| archive.cloned()), ..Retention::default() };
    if let Some(v) = env_num::<u64>("QFREFUND_RETENTION_S", "a whole number of seconds")?.or(retention_s) {
        r.retention = Duration::from_secs(v);
    }
    if let Some(v) =
        env_num::<u64>("QFREFUND_IDEMPOTENCY_RETENTION_S", "a whole number of seconds")?.or(idempotency_retention_s)
    {
        r.idempotency_retention = Duration::from_secs(v);
    }
    if let Some(v) = env_num::<u64>("QFREFUND_AUDIT_RETENTION_S", "a whole number of seconds")?.or(audit_retention_s) {
        r.audit_retention = Duration::from_secs(v);
    }
    if let Some(v) = env_num::<u64>("QFREFUND_SUMMARY_AFTER_S", "a whole number of seconds")?.or(summary_after_s) {
        r.summary_after = (v > 0).then(|| Duration::from_secs(v));
    }
    Ok(r)
}
