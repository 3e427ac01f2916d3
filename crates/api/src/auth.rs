//! Bearer tokens with roles. Tokens come from configuration; each is compared in constant time and
//! never logged (only its name is).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use crate::error::ApiError;
use crate::{AppState, Shared};

/// What a token may do. Each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Look refunds up.
    Read,
    /// Also enqueue refunds.
    Produce,
    /// Also retry, cancel and resolve refunds.
    Operate,
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "read" => Ok(Role::Read),
            "produce" => Ok(Role::Produce),
            "operate" => Ok(Role::Operate),
            other => Err(format!("role {other:?}: expected read, produce or operate")),
        }
    }
}

/// A configured token: `name` identifies the caller in logs and the audit trail.
#[derive(Clone)]
pub struct ApiToken {
    pub name: String,
    pub role: Role,
    secret: String,
}

impl ApiToken {
    /// Refuses secrets too short to resist guessing.
    pub fn new(name: &str, role: Role, secret: &str) -> Result<Self, String> {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c)) {
            return Err(format!("API token name {name:?}: use letters, digits and -_.@"));
        }
        if secret.len() < 16 {
            return Err(format!("API token {name:?}: the secret must be at least 16 characters"));
        }
        Ok(Self { name: name.to_owned(), role, secret: secret.to_owned() })
    }
}

impl ApiToken {
    /// Whether two tokens have the same secret (so that one would pass for the other).
    pub fn same_secret(&self, other: &ApiToken) -> bool {
        ct_eq(self.secret.as_bytes(), other.secret.as_bytes())
    }
}

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiToken").field("name", &self.name).field("role", &self.role).finish_non_exhaustive()
    }
}

/// Equal-length byte strings compared without an early exit; lengths are not secret enough to
/// hide (every configured token is tried, so timing tells nothing about which one matched).
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub role: Role,
}

impl Caller {
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.role >= role {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!("token {:?} has role {:?}; this needs {:?}", self.name, self.role, role)))
        }
    }
}

impl FromRequestParts<Shared> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &Shared) -> Result<Self, ApiError> {
        authenticate(parts, st)
    }
}

/// The caller a token stands for (the console's sign-in), compared in constant time.
pub(crate) fn caller_for_token(st: &AppState, given: &str) -> Option<Caller> {
    let mut found: Option<&crate::ApiToken> = None;
    for t in &st.config.tokens {
        if ct_eq(t.secret.as_bytes(), given.as_bytes()) {
            found = Some(t);
        }
    }
    found.map(|t| Caller { name: t.name.clone(), role: t.role })
}

fn authenticate(parts: &Parts, st: &AppState) -> Result<Caller, ApiError> {
    let header = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or_else(|| ApiError::Unauthorized("missing Authorization: Bearer <token>".into()))?;
    let given = header
        .to_str()
        .ok()
        .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
        .map(str::trim)
        .ok_or_else(|| ApiError::Unauthorized("Authorization must be: Bearer <token>".into()))?;
    // Try every token so the time taken does not depend on which one matched.
    let mut found: Option<&crate::ApiToken> = None;
    for t in &st.config.tokens {
        if ct_eq(t.secret.as_bytes(), given.as_bytes()) {
            found = Some(t);
        }
    }
    found
        .map(|t| Caller { name: t.name.clone(), role: t.role })
        .ok_or_else(|| ApiError::Unauthorized("unknown token".into()))
}

/// Declares the bearer scheme in the OpenAPI document.
pub(crate) struct BearerScheme;

impl utoipa::Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_include_the_smaller_ones() {
        let c = Caller { name: "ops".into(), role: Role::Operate };
        assert!(c.require(Role::Read).is_ok() && c.require(Role::Produce).is_ok());
        let r = Caller { name: "dash".into(), role: Role::Read };
        assert!(matches!(r.require(Role::Produce), Err(ApiError::Forbidden(_))));
    }

    #[test]
    fn tokens_must_be_long_and_never_show_their_secret() {
        assert!(ApiToken::new("shop", Role::Produce, "short").is_err());
        assert!(ApiToken::new("bad name", Role::Produce, "0123456789abcdef").is_err());
        let t = ApiToken::new("shop", Role::Produce, "s3cr3t-0123456789").unwrap();
        assert!(!format!("{t:?}").contains("s3cr3t"));
    }

    #[test]
    fn comparison_needs_every_byte() {
        assert!(ct_eq(b"abcdef", b"abcdef"));
        assert!(!ct_eq(b"abcdef", b"abcdeg"));
        assert!(!ct_eq(b"abc", b"abcd"));
    }
}
