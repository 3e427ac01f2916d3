//! The operator console, served at `/console`: server-rendered HTML, one stylesheet of its own,
//! no script and nothing fetched from elsewhere, so it works offline and under a strict CSP.
//! Operators sign in with their API token, or through a trusted authenticating proxy (its
//! `X-Forwarded-User` / `X-Forwarded-Email`, believed only from the addresses configured); a
//! session is a random id in an HttpOnly, Secure, SameSite=Strict cookie, kept in the ledger so
//! every `serve` process knows it. Every form carries the session's CSRF token; roles are
//! enforced on the server (a read-only operator sees no action and is refused when posting
//! anyway); every action goes through the API's own handlers, audited with the person's name.

mod actions;
mod find;
mod fleet;
mod pages;
mod views;

use std::time::Duration;

use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use crate::Shared;
use crate::auth::{Caller, Role};

/// The session cookie's name.
/// (`__Host-`: a browser takes it only from this host, over HTTPS or on localhost, for `/`, so no
/// sibling subdomain can plant one.)
pub const COOKIE: &str = "__Host-qfrefund_session";
/// How long a session lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);

/// The console's routes (under `/console`).
pub(crate) fn router() -> Router<Shared> {
    Router::new()
        .route("/console", get(pages::overview))
        .route("/console/login", get(actions::login_form).post(actions::login))
        .route("/console/logout", post(actions::logout))
        .route("/console/review", get(pages::review))
        .route("/console/refunds", get(find::search))
        .route("/console/export.csv", get(find::export))
        .route("/console/refund/{merchant}/{out_trade_no}", get(pages::refund))
        .route("/console/refund/{merchant}/{out_trade_no}/{action}", post(actions::act))
        .route("/console/approvals", get(pages::approvals))
        .route("/console/approvals/{id}/{verdict}", post(actions::decide))
        .route("/console/audit", get(pages::audit))
        .route("/console/merchants/{verb}", post(fleet::pause_or_resume))
        .route("/console/webhooks", get(fleet::webhooks))
        .route("/console/webhooks/redeliver", post(fleet::redeliver))
        .route("/console/app.css", get(stylesheet))
        // Every answer under /console carries the security headers, redirects and refusals too.
        .layer(axum::middleware::map_response(|resp: Response| async move { secure(resp) }))
}

/// A signed-in operator.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Session {
    #[serde(skip)]
    pub id: String,
    pub name: String,
    /// `read` or `operate`.
    pub role: String,
    pub csrf: String,
}

impl Session {
    pub fn caller(&self) -> Caller {
        Caller { name: self.name.clone(), role: if self.role == "operate" { Role::Operate } else { Role::Read } }
    }

    pub fn operates(&self) -> bool {
        self.role == "operate"
    }
}

/// `n` random bytes as hex (session ids and CSRF tokens); `None` when the system has no
/// randomness to give (the caller answers 503).
pub(crate) fn random_hex(n: usize) -> Option<String> {
    let mut b = vec![0u8; n];
    if let Err(e) = getrandom::fill(&mut b) {
        tracing::error!(error = %e, "no randomness for a session");
        return None;
    }
    Some(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// The value of cookie `name` in the request.
fn cookie<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

impl FromRequestParts<Shared> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, st: &Shared) -> Result<Self, Response> {
        let to_login = || Redirect::to("/console/login").into_response();
        let Some(id) = cookie(parts, COOKIE).filter(|id| id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()))
        else {
            // Behind a trusted authenticating proxy, its user is signed in at once.
            return match actions::proxy_session(parts, st).await {
                Some(s) => Ok(s),
                None => Err(to_login()),
            };
        };
        match st.ledger.session(id).await {
            Ok(Some(raw)) => match serde_json::from_str::<Session>(&raw) {
                // The token it was signed in with still there, with the role it had (or less):
                // a token removed or demoted ends or narrows its sessions at once.
                Ok(s) => match st.config.tokens.iter().find(|t| t.name == s.name).map(|t| t.role) {
                    Some(Role::Operate) => Ok(Session { id: id.to_owned(), ..s }),
                    Some(Role::Read) => Ok(Session { id: id.to_owned(), role: "read".into(), ..s }),
                    _ => Err(to_login()),
                },
                Err(_) => Err(to_login()),
            },
            Ok(None) => Err(to_login()),
            Err(e) => {
                tracing::warn!(error = %e, "reading a console session failed");
                Err((StatusCode::SERVICE_UNAVAILABLE, "the ledger is unavailable").into_response())
            }
        }
    }
}

/// The headers every console answer carries: nothing but this origin's own stylesheet, forms
/// and images; never framed, never cached, no referrer sent elsewhere (a `no-referrer` policy
/// would make browsers send `Origin: null`, which the forms refuse).
/// (Applied to the whole console router, redirects and refusals included.)
fn secure(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

async fn stylesheet() -> Response {
    let mut resp = include_str!("app.css").into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/css; charset=utf-8"));
    resp
}
