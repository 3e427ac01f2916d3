//! The settings tree: every setting declared once (its key, type, default, environment
//! variable and meaning) and layered by figment: defaults < TOML file (`--config` or
//! `QFREFUND_CONFIG`) < environment. `docs/configuration.md`, `deploy/qfrefund.example.toml` and
//! the Kubernetes ConfigMap are generated from or checked against these declarations.

pub mod help;
mod layers;
pub mod render;
mod tree;
pub mod values;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::Serialized;

pub use layers::{ENV, FILE, SECRETS_DIR, env, variable};
pub use tree::{ApiSettings, MerchantSettings, Settings, WorkerSettings};

/// How a setting's text (in the environment) is read, and how it is shown.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Text,
    /// Never shown; only whether it is set.
    Secret,
    /// A URL that may carry a password: shown without it.
    Url,
    Whole,
    Number,
    Switch,
    /// Whole numbers separated by commas (`0,2`).
    WholeList,
    /// `name=shard,…`.
    Pins,
}

/// One declared setting.
#[derive(Debug)]
pub struct Field {
    /// Its key within its section.
    pub key: &'static str,
    /// Its environment variable ("" for file-only settings).
    pub env: &'static str,
    /// Older names of that variable, still read (with a warning).
    pub aliases: &'static [&'static str],
    pub kind: Kind,
    pub doc: &'static str,
}

/// A declared setting with its dotted path (`worker.lease_ms`).
pub struct Declared {
    pub path: String,
    pub field: &'static Field,
}

/// Every declared setting, in the order of the reference (the default merchant's as
/// `merchants.default.*`).
pub fn declared() -> Vec<Declared> {
    let sections: [(&str, &'static [Field]); 4] = [
        (Settings::PREFIX, Settings::FIELDS),
        (WorkerSettings::PREFIX, WorkerSettings::FIELDS),
        (ApiSettings::PREFIX, ApiSettings::FIELDS),
        (MerchantSettings::PREFIX, MerchantSettings::FIELDS),
    ];
    let mut out = Vec::new();
    for (prefix, fields) in sections {
        for field in fields {
            let path = if prefix.is_empty() { field.key.to_owned() } else { format!("{prefix}.{}", field.key) };
            out.push(Declared { path, field });
        }
    }
    out
}

/// The layered settings and where each value came from.
pub struct Loaded {
    pub settings: Settings,
    pub figment: Figment,
    pub file: Option<PathBuf>,
}

/// Reads the file (if any) and the environment over the defaults.
pub fn load(path: Option<&Path>) -> anyhow::Result<Loaded> {
    let file = path.map(Path::to_path_buf).or_else(|| env("QFREFUND_CONFIG").map(Into::into));
    let mut figment = Figment::from(Serialized::defaults(Settings::default()));
    if let Some(p) = &file {
        figment = figment.merge(layers::FileLayer::read(p)?);
    }
    figment = figment.merge(layers::EnvLayer::read()?);
    let settings = figment.extract::<Settings>().map_err(|e| {
        let all: Vec<String> = e.into_iter().map(|e| e.to_string()).collect();
        anyhow::anyhow!("configuration: {}", all.join("; "))
    })?;
    Ok(Loaded { settings, figment, file })
}

/// Declares a section of the tree: its fields with their defaults, environment variables and
/// kinds, and the sections nested in it.
macro_rules! section {
    (
        $(#[doc = $sdoc:literal])*
        $name:ident at $prefix:literal {
            $(
                $(#[doc = $doc:literal])*
                $field:ident : $ty:ty = $default:expr => $env:literal $(| $alias:literal)* , $kind:ident ;
            )*
        }
        $( nested { $( $(#[doc = $ndoc:literal])* $nfield:ident : $nty:ty ),* $(,)? } )?
    ) => {
        $(#[doc = $sdoc])*
        #[derive(Clone, serde::Serialize, serde::Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct $name {
            $( $(#[doc = $doc])* pub $field: $ty, )*
            $($( $(#[doc = $ndoc])* pub $nfield: $nty, )*)?
        }

        impl Default for $name {
            fn default() -> Self {
                Self { $( $field: $default, )* $($( $nfield: Default::default(), )*)? }
            }
        }

        impl $name {
            pub const PREFIX: &'static str = $prefix;
            pub const FIELDS: &'static [$crate::settings::Field] = &[$(
                $crate::settings::Field {
                    key: stringify!($field),
                    env: $env,
                    aliases: &[$($alias),*],
                    kind: $crate::settings::Kind::$kind,
                    doc: concat!($($doc),*),
                },
            )*];
        }
    };
}
use section;
