//! The API's tokens: `[[api.tokens]]` (each naming the variable that holds its token) or
//! `QFREFUND_API_TOKENS="name:role:token,…"`.

use anyhow::{Context, bail};

use crate::settings::{SECRETS_DIR, values::Tokens, variable};

pub(super) fn tokens(setting: &Tokens) -> anyhow::Result<Vec<api::ApiToken>> {
    let mut out = Vec::new();
    match setting {
        Tokens::None => {}
        Tokens::Listed(list) => {
            for t in list {
                let role = t.role.parse::<api::Role>().map_err(|e| anyhow::anyhow!("api token {}: {e}", t.name))?;
                let secret = variable(&t.token_env)?.with_context(|| {
                    format!(
                        "api token {}: environment variable {} is not set (nor a file {} in {SECRETS_DIR})",
                        t.name, t.token_env, t.token_env
                    )
                })?;
                out.push(api::ApiToken::new(&t.name, role, &secret).map_err(anyhow::Error::msg)?);
            }
        }
        Tokens::Inline(list) => {
            for (i, item) in list.expose().split(',').map(str::trim).filter(|s| !s.is_empty()).enumerate() {
                let mut parts = item.splitn(3, ':');
                let (Some(name), Some(role), Some(secret)) = (parts.next(), parts.next(), parts.next()) else {
                    bail!("QFREFUND_API_TOKENS: entry {} is not name:role:token", i + 1);
                };
                let role = role
                    .parse::<api::Role>()
                    .map_err(|e| anyhow::anyhow!("QFREFUND_API_TOKENS entry {}: {e}", i + 1))?;
                out.push(api::ApiToken::new(name, role, secret).map_err(anyhow::Error::msg)?);
            }
        }
    }
    // A name is who acts in the audit trail and who may approve another's request: two tokens
    // under one name (in any case), or one secret under two names, would blur that.
    for (i, t) in out.iter().enumerate() {
        for u in &out[i + 1..] {
            if t.name.eq_ignore_ascii_case(&u.name) {
                bail!(
                    "API tokens {:?} and {:?}: two tokens under one name (give each person their own)",
                    t.name,
                    u.name
                );
            }
            if t.same_secret(u) {
                bail!("API tokens {:?} and {:?} have the same secret", t.name, u.name);
            }
        }
    }
    if out.is_empty() {
        bail!(
            "the API needs at least one token: set QFREFUND_API_TOKENS=name:role:token or [[api.tokens]] in the config file"
        );
    }
    Ok(out)
}
