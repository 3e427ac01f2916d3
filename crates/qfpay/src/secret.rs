//! The client key: usable for signing, impossible to print, log or serialise by accident.

use std::fmt;

/// A merchant's QFPay client key.
///
/// It deliberately implements neither `Serialize` nor a revealing `Debug`/`Display`: the only way
/// to read it is [`ClientKey::expose`], which the signer calls. Grepping for `expose` finds every
/// place the key leaves this type.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientKey(String);

impl ClientKey {
    /// Wraps a key. Surrounding whitespace (a trailing newline from a secrets file) is removed.
    pub fn new(key: impl Into<String>) -> Self {
        let key = key.into();
        let trimmed = key.trim();
        if trimmed.len() == key.len() { Self(key) } else { Self(trimmed.to_owned()) }
    }

    /// The key itself, for signing. Never format it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Read from configuration straight into the redacting type (there is no `Serialize`).
impl<'de> serde::Deserialize<'de> for ClientKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(ClientKey::new)
    }
}

impl fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientKey(<redacted>)")
    }
}

impl fmt::Display for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_key() {
        let key = ClientKey::new("0E32A59A8B454940A2FF39D7C1B2A3F4\n");
        assert_eq!(key.expose(), "0E32A59A8B454940A2FF39D7C1B2A3F4");
        for shown in [format!("{key:?}"), format!("{key}"), format!("{key:#?}")] {
            assert!(!shown.contains("0E32"), "{shown}");
        }
    }
}
