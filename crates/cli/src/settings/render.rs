//! The settings as people read them: the reference table (`docs/configuration.md`), the example
//! file (`deploy/qfrefund.example.toml`), and the effective values with where each came from.

use std::sync::OnceLock;

use figment::value::Value;

use super::{Declared, Kind, Loaded, Settings, declared};

/// The default at `path` (`worker.lease_ms`), from the defaults serialised once per process
/// (every command's help shows them).
fn default_at(path: &str) -> serde_json::Value {
    static DEFAULTS: OnceLock<serde_json::Value> = OnceLock::new();
    let mut at = DEFAULTS.get_or_init(|| serde_json::to_value(Settings::default()).unwrap_or_default());
    for key in path.split('.') {
        at = at.get(key).unwrap_or(&serde_json::Value::Null);
    }
    at.clone()
}

/// A setting's default, as the reference shows it ("—": unset).
pub fn default_text(path: &str, kind: Kind) -> String {
    match default_at(path) {
        serde_json::Value::Null => "—".into(),
        serde_json::Value::Bool(b) if kind == Kind::Switch => (if b { "on" } else { "off" }).into(),
        serde_json::Value::String(s) => format!("`{s}`"),
        serde_json::Value::Object(m) if m.is_empty() => "—".into(),
        other => other.to_string(),
    }
}

/// The rows of the reference table: variable, key, default, meaning.
pub fn reference_table() -> String {
    let mut out = String::from("| Variable | Key | Default | Meaning |\n|---|---|---|---|\n");
    for Declared { path, field } in declared() {
        let var = if field.env.is_empty() { "—".to_owned() } else { format!("`{}`", field.env) };
        let doc = field.doc.trim().replace('|', "\\|");
        let aliases: Vec<String> = field.aliases.iter().map(|a| format!("`{a}`")).collect();
        let also = if aliases.is_empty() { String::new() } else { format!(" (formerly {})", aliases.join(", ")) };
        out.push_str(&format!("| {var} | `{path}` | {} | {doc}{also} |\n", default_text(&path, field.kind)));
    }
    out
}

/// The example configuration file: every setting, commented out at its default.
pub fn example_toml() -> String {
    let mut out = String::from(
        "# qfrefund configuration: every setting at its default (generated from the settings tree;\n\
         # `qfrefund config show` prints the effective values). The environment overrides this file:\n\
         # each setting's variable is named beside it.\n",
    );
    let mut section = String::new();
    for Declared { path, field } in declared() {
        let (head, key) = path.rsplit_once('.').unwrap_or(("", path.as_str()));
        if head != section {
            out.push_str(&format!("\n[{head}]\n"));
            section = head.to_owned();
        }
        let doc = field.doc.trim();
        out.push('\n');
        for line in wrap(doc, 96) {
            out.push_str(&format!("# {line}\n"));
        }
        let var = if field.env.is_empty() { String::new() } else { format!("  # {}", field.env) };
        out.push_str(&format!("# {key} = {}{var}\n", toml_default(&path, field.kind)));
    }
    out
}

fn toml_default(path: &str, kind: Kind) -> String {
    match (default_at(path), kind) {
        _ if path == "api.tokens" => r#"[{ name = "shop", role = "produce", token_env = "SHOP_API_TOKEN" }]"#.into(),
        (serde_json::Value::Null, Kind::WholeList) => "[0, 1]".into(),
        (serde_json::Value::Null, Kind::Whole) => "0".into(),
        (serde_json::Value::Null, _) => "\"\"".into(),
        (serde_json::Value::Object(_), Kind::Pins) => "{ bigshop = 0 }".into(),
        (v, _) => v.to_string(),
    }
}

fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in text.split_whitespace() {
        let last = lines.last_mut().map(|l| l.len()).unwrap_or(0);
        if last > 0 && last + 1 + word.len() > width {
            lines.push(String::new());
        }
        if let Some(line) = lines.last_mut() {
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
    }
    lines
}

/// One effective setting: its key, its value as it may be shown, and where it came from.
#[derive(serde::Serialize)]
pub struct Shown {
    pub key: String,
    pub value: Option<String>,
    pub source: String,
}

/// Every effective setting (and every merchant's), secrets redacted.
pub fn effective(loaded: &Loaded) -> Vec<Shown> {
    let mut paths: Vec<(String, Kind)> = Vec::new();
    let mut merchant_fields = Vec::new();
    for Declared { path, field } in declared() {
        match path.strip_prefix("merchants.default.") {
            Some(key) => merchant_fields.push((key.to_owned(), field.kind)),
            None => paths.push((path, field.kind)),
        }
    }
    for m in loaded.settings.merchants.keys() {
        paths.extend(merchant_fields.iter().map(|(key, kind)| (format!("merchants.{m}.{key}"), *kind)));
    }
    let mut out = Vec::new();
    for (path, kind) in paths {
        let value = loaded.figment.find_value(&path).ok().and_then(|v| shown(&v, kind));
        let source = match loaded.figment.find_metadata(&path) {
            _ if value.is_none() => "unset".into(),
            Some(m) if m.name == super::ENV => {
                let var = m.interpolate(&figment::Profile::Default, &path.split('.').collect::<Vec<_>>());
                format!("environment ({var})")
            }
            Some(m) if m.name == super::FILE => {
                loaded.file.as_ref().map_or("config file".into(), |f| format!("file ({})", f.display()))
            }
            _ => "default".into(),
        };
        out.push(Shown { key: path, value, source });
    }
    out
}

fn shown(v: &Value, kind: Kind) -> Option<String> {
    let text = match v {
        Value::Empty(..) => return None,
        Value::String(_, s) => s.clone(),
        Value::Bool(_, b) if kind == Kind::Switch => (if *b { "on" } else { "off" }).into(),
        Value::Bool(_, b) => b.to_string(),
        Value::Num(_, n) => {
            let whole = n.to_u128().map(|u| u.to_string()).or_else(|| n.to_i128().map(|i| i.to_string()));
            match (whole, n.to_f64()) {
                (Some(w), _) if kind != Kind::Number => w,
                (_, Some(f)) => f.to_string(),
                _ => format!("{n:?}"),
            }
        }
        Value::Char(_, c) => c.to_string(),
        Value::Array(_, items) => items.iter().filter_map(|i| shown(i, Kind::Text)).collect::<Vec<_>>().join(","),
        Value::Dict(_, d) if d.is_empty() => return None,
        Value::Dict(_, d) => d
            .iter()
            .map(|(k, v)| format!("{k}={}", shown(v, Kind::Text).unwrap_or_default()))
            .collect::<Vec<_>>()
            .join(","),
    };
    Some(match kind {
        Kind::Secret => "<redacted>".into(),
        // PostgreSQL's redaction keeps the user (and knows `password=` keywords); every other
        // URL (Redis, with or without a scheme, a Sentinel's query) goes through the ledger's.
        Kind::Url if text.starts_with("postgres") => archive::postgres::redact(&text),
        Kind::Url => ledger::redact_url(&text),
        _ => text,
    })
}
