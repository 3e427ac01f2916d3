//! Reading settings: the environment, numbers, and TOML errors that never quote a secret.

use std::path::Path;
use std::time::Duration;

/// A TOML error without the quoted source line: that line may hold a client key.
pub(super) fn config_error(path: &Path, text: &str, e: &toml::de::Error) -> anyhow::Error {
    let at = e.span().map(|span| {
        let before = &text[..span.start.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        format!(" at line {line}, column {col}")
    });
    anyhow::anyhow!("config file {}{}: {}", path.display(), at.unwrap_or_default(), e.message())
}

/// Reads the environment variable `name`, if set and not blank.
pub(super) fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

pub(super) fn env_num<T: std::str::FromStr>(name: &str, what: &str) -> anyhow::Result<Option<T>> {
    env(name).map(|v| v.parse::<T>().map_err(|_| anyhow::anyhow!("{name}: expected {what}, got {v:?}"))).transpose()
}

pub(super) fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}
