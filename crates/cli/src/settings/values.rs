//! Value types of the settings tree that take more than one spelling, and the one that never
//! shows what it holds.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A switch: `true`/`false` in a file, or `on`/`off` (also `true`/`false`, `1`/`0`) as text.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct OnOff(pub bool);

/// `on`/`off` and their synonyms; `None` for anything else.
pub fn parse_switch(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "1" | "yes" => Some(true),
        "off" | "false" | "0" | "no" => Some(false),
        _ => None,
    }
}

impl Serialize for OnOff {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bool(self.0)
    }
}

impl<'de> Deserialize<'de> for OnOff {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Switch;
        impl Visitor<'_> for Switch {
            type Value = OnOff;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("on or off")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<OnOff, E> {
                Ok(OnOff(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<OnOff, E> {
                parse_switch(v).map(OnOff).ok_or_else(|| E::invalid_value(de::Unexpected::Str(v), &self))
            }
        }
        d.deserialize_any(Switch)
    }
}

/// A secret (a client key, a webhook secret, API tokens): its `Debug` and its serialisation say
/// only that it is there, and it takes a number as readily as text, so that a type error can
/// never quote it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Text;
        impl Visitor<'_> for Text {
            type Value = Secret;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a secret, as text")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Secret, E> {
                Ok(Secret(v.to_owned()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Secret, E> {
                Err(E::custom("a secret must be text (quote it)"))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Secret, E> {
                Err(E::custom("a secret must be text (quote it)"))
            }
        }
        d.deserialize_any(Text)
    }
}

/// `[[api.tokens]]` in a file (each naming the variable that holds its token), or
/// `QFREFUND_API_TOKENS="name:role:token,…"` in the environment, which replaces the file's list.
#[derive(Clone, Default)]
pub enum Tokens {
    #[default]
    None,
    Listed(Vec<TokenEntry>),
    Inline(Secret),
}

/// One `[[api.tokens]]` entry.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    pub name: String,
    pub role: String,
    /// The name of an environment variable holding the token (tokens are not written in files).
    pub token_env: String,
}

impl Serialize for Tokens {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Tokens::None => s.serialize_none(),
            Tokens::Listed(list) => list.serialize(s),
            Tokens::Inline(secret) => secret.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Tokens {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Either;
        impl<'de> Visitor<'de> for Either {
            type Value = Tokens;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of {name, role, token_env} tables, or name:role:token,… as text")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Tokens, E> {
                Ok(Tokens::Inline(Secret(v.to_owned())))
            }
            fn visit_none<E: de::Error>(self) -> Result<Tokens, E> {
                Ok(Tokens::None)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Tokens, E> {
                Ok(Tokens::None)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<Tokens, A::Error> {
                Vec::deserialize(de::value::SeqAccessDeserializer::new(seq)).map(Tokens::Listed)
            }
        }
        d.deserialize_any(Either)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switches_take_every_spelling_and_refuse_others() {
        assert_eq!(parse_switch(" ON "), Some(true));
        assert_eq!(parse_switch("0"), Some(false));
        assert_eq!(parse_switch("maybe"), None);
    }

    #[test]
    fn a_secret_never_shows_itself() {
        let s = Secret("k-123".into());
        assert!(!format!("{s:?}").contains("k-123"));
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"<redacted>\"");
        let n: Secret = serde_json::from_str("12345").unwrap();
        assert_eq!(n.expose(), "12345");
    }
}
