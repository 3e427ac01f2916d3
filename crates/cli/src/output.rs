//! How commands print what they found (`--output`): JSON lines, the default off a terminal and
//! what scripts read; an aligned table, the default on one; or CSV. Every time in milliseconds
//! (`created_at`, `at`, …) gains an RFC 3339 twin beside it (`created_at_rfc3339`), and tables
//! and CSV show that one.

use std::io::IsTerminal;
use std::sync::OnceLock;

use clap::ValueEnum;
use serde_json::{Map, Value};

use crate::exit::out;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Json,
    Table,
    Csv,
}

static FORMAT: OnceLock<Format> = OnceLock::new();

/// Sets the format for this process: the one asked for, else a table on a terminal, JSON off one.
pub fn set(asked: Option<Format>) {
    let format = asked.unwrap_or(if std::io::stdout().is_terminal() { Format::Table } else { Format::Json });
    let _ = FORMAT.set(format);
}

pub fn format() -> Format {
    *FORMAT.get().unwrap_or(&Format::Json)
}

/// RFC 3339, UTC, to the millisecond, of `ms` since the epoch.
pub fn rfc3339(ms: i64) -> String {
    let t = qfpay::Txdtm::from_unix(ms.div_euclid(1000), 0).to_string();
    format!("{}T{}.{:03}Z", &t[..10], &t[11..], ms.rem_euclid(1000))
}

/// Whether `key` holds a time in ms (`at`, `created_at`, `heartbeat_at`, …).
fn is_time(key: &str) -> bool {
    key == "at" || key.ends_with("_at")
}

/// `v` with `<key>_rfc3339` beside every time field holding a positive number, in every object
/// it holds.
pub fn with_times(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                let time = (is_time(&k)).then(|| v.as_i64()).flatten().filter(|ms| *ms > 0);
                let twin = format!("{k}_rfc3339");
                out.insert(k, with_times(v));
                if let Some(ms) = time {
                    out.insert(twin, Value::String(rfc3339(ms)));
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.into_iter().map(with_times).collect()),
        other => other,
    }
}

/// A value as a table or CSV cell shows it: a time as RFC 3339, text without quotes.
fn cell(v: &Value, key: &str) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Number(n) if is_time(key) => n.as_i64().filter(|ms| *ms > 0).map_or_else(|| n.to_string(), rfc3339),
        other => other.to_string(),
    }
}

/// A CSV field, quoted only when it must be (RFC 4180).
pub fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) { format!("\"{}\"", text.replace('"', "\"\"")) } else { text.to_owned() }
}

/// Rows of one kind, printed as they come (so `events --follow` prints each at once).
pub struct Rows {
    columns: &'static [(&'static str, usize)],
    started: bool,
}

impl Rows {
    /// `columns`: the keys a table or CSV shows, each with its width in a table.
    pub fn new(columns: &'static [(&'static str, usize)]) -> Self {
        Self { columns, started: false }
    }

    pub fn print(&mut self, row: &impl serde::Serialize) -> anyhow::Result<()> {
        let v = with_times(serde_json::to_value(row)?);
        let header = !std::mem::replace(&mut self.started, true);
        match format() {
            Format::Json => out!("{v}"),
            Format::Csv => {
                if header {
                    out!("{}", self.columns.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(","));
                }
                let cells: Vec<String> = self.columns.iter().map(|(k, _)| csv_field(&cell(&v[*k], k))).collect();
                out!("{}", cells.join(","));
            }
            Format::Table => {
                if header {
                    out!("{}", self.line(|k| k.to_uppercase()));
                }
                out!("{}", self.line(|k| cell(&v[k], k)));
            }
        }
        Ok(())
    }

    fn line(&self, text: impl Fn(&str) -> String) -> String {
        let cells: Vec<String> = self.columns.iter().map(|(k, w)| format!("{:<w$}", text(k), w = *w)).collect();
        cells.join("  ").trim_end().to_owned()
    }
}

/// One object (a record, a summary): a JSON line, `key  value` lines in a table, or a CSV
/// header and row of its top-level fields.
pub fn one(v: &impl serde::Serialize) -> anyhow::Result<()> {
    let v = with_times(serde_json::to_value(v)?);
    let Value::Object(m) = &v else {
        out!("{v}");
        return Ok(());
    };
    match format() {
        Format::Json => out!("{v}"),
        Format::Csv => {
            out!("{}", m.keys().map(|k| csv_field(k)).collect::<Vec<_>>().join(","));
            out!("{}", m.iter().map(|(k, v)| csv_field(&cell(v, k))).collect::<Vec<_>>().join(","));
        }
        Format::Table => {
            let width = m.keys().map(String::len).max().unwrap_or(0);
            for (k, v) in m.iter().filter(|(k, _)| !k.ends_with("_rfc3339")) {
                out!("{k:<width$}  {}", cell(v, k));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_beside_their_milliseconds() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_796_235_066_025), "2026-12-02T18:11:06.025Z");
        let v = with_times(serde_json::json!({"created_at": 1_000, "next_at": 0, "txamt": 5, "rows": [{"at": 1}]}));
        assert_eq!(v["created_at_rfc3339"], "1970-01-01T00:00:01.000Z");
        assert!(v.get("next_at_rfc3339").is_none(), "0 is no time");
        assert!(v.get("txamt_rfc3339").is_none());
        assert_eq!(v["rows"][0]["at_rfc3339"], "1970-01-01T00:00:00.001Z");
    }

    #[test]
    fn csv_fields_are_quoted_only_when_they_must_be() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"no\""), "\"say \"\"no\"\"\"");
    }
}
