//! The two layers over the defaults: the TOML file and the environment. Neither quotes a secret
//! in an error: a TOML error names the line and column, never the line itself, and every
//! variable is read as the declared setting's kind.

use std::path::{Path, PathBuf};

use figment::value::{Dict, Map, Value};
use figment::{Error, Metadata, Profile, Provider};

use super::{Declared, Kind, declared, values::parse_switch};

/// The name figment gives values from the file, and from the environment.
pub const FILE: &str = "config file";
pub const ENV: &str = "environment variable";

/// The environment variable `name`, if set and not blank.
pub fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

/// Names the directory of files read as variables (see [`variable`]).
pub const SECRETS_DIR: &str = "QFREFUND_SECRETS_DIR";

/// The variable `name`: from the environment, or else from the file `name` in the directory
/// `QFREFUND_SECRETS_DIR` names (a Kubernetes Secret mounted as a volume: one file per key), so
/// secrets need not be environment variables. A missing file is an unset variable; a directory
/// that is not one, or a file that cannot be read, is an error naming the path (never the text).
pub fn variable(name: &str) -> anyhow::Result<Option<String>> {
    if let Some(v) = env(name) {
        return Ok(Some(v));
    }
    let Some(dir) = env(SECRETS_DIR) else { return Ok(None) };
    let dir = Path::new(&dir);
    if !dir.is_dir() {
        anyhow::bail!("{SECRETS_DIR}: {} is not a directory", dir.display());
    }
    // A variable's name is a file name here, never a path.
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Ok(None);
    }
    let path = dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(text.trim().to_owned()).filter(|v| !v.is_empty())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::anyhow!("{name}: reading {} ({SECRETS_DIR}): {e}", path.display())),
    }
}

/// Whether `name` is read from the secrets directory (it is not in the environment).
pub fn from_secrets_dir(name: &str) -> bool {
    env(name).is_none() && matches!(variable(name), Ok(Some(_)))
}

/// The TOML file, parsed once.
pub struct FileLayer {
    path: PathBuf,
    table: toml::Table,
}

impl FileLayer {
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading config file {}: {e}", path.display()))?;
        let table = toml::from_str::<toml::Table>(&text).map_err(|e| config_error(path, &text, &e))?;
        Ok(Self { path: path.to_path_buf(), table })
    }
}

impl Provider for FileLayer {
    fn metadata(&self) -> Metadata {
        Metadata::from(FILE, self.path.as_path()).interpolater(|_, keys| keys.join("."))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, Error> {
        figment::providers::Serialized::defaults(&self.table).data()
    }
}

/// A TOML error without the quoted source line: that line may hold a client key.
fn config_error(path: &Path, text: &str, e: &toml::de::Error) -> anyhow::Error {
    let at = e.span().map(|span| {
        let before = &text[..span.start.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        format!(" at line {line}, column {col}")
    });
    anyhow::anyhow!("config file {}{}: {}", path.display(), at.unwrap_or_default(), e.message())
}

/// Every declared variable that is set, read as its setting's kind.
pub struct EnvLayer {
    dict: Dict,
}

impl EnvLayer {
    pub fn read() -> anyhow::Result<Self> {
        let mut dict = Dict::new();
        for Declared { path, field } in declared() {
            let names: Vec<&str> =
                std::iter::once(field.env).chain(field.aliases.iter().copied()).filter(|n| !n.is_empty()).collect();
            // The environment (the name, then its old aliases) before the secrets directory.
            let mut found = names.iter().find_map(|n| env(n).map(|v| (*n, v)));
            if found.is_none() {
                for n in &names {
                    if let Some(v) = variable(n)? {
                        found = Some((*n, v));
                        break;
                    }
                }
            }
            let Some((name, raw)) = found else { continue };
            if name != field.env {
                tracing::warn!("{name} is deprecated: set {} instead", field.env);
            }
            let value = parse(field.kind, name, &raw).map_err(anyhow::Error::msg)?;
            insert(&mut dict, &path, value);
        }
        Ok(Self { dict })
    }
}

impl Provider for EnvLayer {
    fn metadata(&self) -> Metadata {
        Metadata::named(ENV).interpolater(|_, keys| {
            let path = keys.join(".");
            match declared().into_iter().find(|d| d.path == path) {
                Some(d) if from_secrets_dir(d.field.env) => format!("{} in {SECRETS_DIR}", d.field.env),
                Some(d) => d.field.env.to_owned(),
                None => path,
            }
        })
    }

    fn data(&self) -> Result<Map<Profile, Dict>, Error> {
        Ok(Profile::Default.collect(self.dict.clone()))
    }
}

fn insert(dict: &mut Dict, path: &str, value: Value) {
    match path.split_once('.') {
        None => {
            dict.insert(path.to_owned(), value);
        }
        Some((head, rest)) => {
            let entry = dict.entry(head.to_owned()).or_insert_with(|| Value::from(Dict::new()));
            if let Value::Dict(_, inner) = entry {
                insert(inner, rest, value);
            }
        }
    }
}

/// A variable's text as its setting's kind; the error names the variable (and, but for a secret,
/// what it holds).
pub(super) fn parse(kind: Kind, name: &str, raw: &str) -> Result<Value, String> {
    let whole =
        |part: &str| part.trim().parse::<u64>().map_err(|_| format!("{name}: expected a whole number, got {part:?}"));
    Ok(match kind {
        Kind::Text | Kind::Url | Kind::Secret => Value::from(raw.to_owned()),
        Kind::Whole => Value::from(whole(raw)?),
        Kind::Number => Value::from(raw.parse::<f64>().map_err(|_| format!("{name}: expected a number, got {raw:?}"))?),
        Kind::Switch => {
            Value::from(parse_switch(raw).ok_or_else(|| format!("{name}: expected on or off, got {raw:?}"))?)
        }
        Kind::WholeList => {
            let parts = raw.split(',').map(str::trim).filter(|p| !p.is_empty());
            Value::from(parts.map(|p| whole(p).map(Value::from)).collect::<Result<Vec<_>, _>>()?)
        }
        Kind::Pins => {
            let mut pins = Dict::new();
            for (i, item) in raw.split(',').map(str::trim).filter(|s| !s.is_empty()).enumerate() {
                let Some((m, s)) = item.split_once('=') else {
                    return Err(format!("{name}: entry {} ({item:?}) is not merchant=shard", i + 1));
                };
                let s: u64 =
                    s.trim().parse().map_err(|_| format!("{name}: entry {}: the shard must be a number", i + 1))?;
                if pins.insert(m.trim().to_owned(), Value::from(s)).is_some() {
                    return Err(format!("{name}: merchant {:?} named twice", m.trim()));
                }
            }
            Value::from(pins)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_are_read_as_their_kind_and_errors_name_them() {
        assert!(
            parse(Kind::Whole, "QFREFUND_LEASE_MS", "abc")
                .unwrap_err()
                .contains("QFREFUND_LEASE_MS: expected a whole number")
        );
        assert!(parse(Kind::Switch, "X", "maybe").unwrap_err().contains("on or off"));
        assert!(parse(Kind::Pins, "P", "big").unwrap_err().contains("merchant=shard"));
        assert!(parse(Kind::Pins, "P", "big=x").unwrap_err().contains("number"));
        assert!(parse(Kind::Pins, "P", "a=1,a=2").unwrap_err().contains("twice"));
        assert!(matches!(parse(Kind::Text, "QFPAY_APP_CODE", "12345").unwrap(), Value::String(..)));
        assert!(matches!(parse(Kind::WholeList, "S", "0, 2").unwrap(), Value::Array(_, a) if a.len() == 2));
    }
}
