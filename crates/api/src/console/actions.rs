//! The console's actions (POST): signing in and out, an operator's action on a refund, deciding
//! an approval request. Each checks the session's CSRF token and that the form comes from this
//! origin, then goes through the API's own handlers (the same rules, the same audit entries).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Form, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::json;

use super::views::{error, page, u};
use super::{COOKIE, SESSION_TTL, Session, random_hex};
use crate::Shared;
use crate::operate::Action;

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    pub token: String,
}

#[derive(Debug, Deserialize)]
pub struct ActionForm {
    pub csrf: String,
    #[serde(default)]
    pub reason: String,
    pub state: Option<String>,
    pub force: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    pub csrf: String,
    #[serde(default)]
    pub reason: String,
}

/// A form posted from another origin is refused (with the SameSite cookie and the CSRF token,
/// a third line of defence).
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) else { return true };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    origin.split_once("://").map(|(_, rest)| rest) == Some(host)
}

fn csrf_ok(s: &Session, given: &str) -> bool {
    given.len() == s.csrf.len() && given.bytes().zip(s.csrf.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

pub async fn login_form(State(st): State<Shared>, parts: Parts) -> Response {
    let mut parts = parts;
    if Session::from_request_parts(&mut parts, &st).await.is_ok() {
        return Redirect::to("/console").into_response();
    }
    page(
        "Sign in",
        None,
        None,
        r#"<form method="post" action="/console/login" id="login"><label>API token <input type="password" name="token" autocomplete="current-password" required></label><button>Sign in</button></form><p>Read-only and operator tokens sign in; the token's name is who acts in the audit trail.</p>"#,
    )
}

pub async fn login(State(st): State<Shared>, headers: HeaderMap, Form(f): Form<LoginForm>) -> Response {
    if !same_origin(&headers) {
        return error(StatusCode::FORBIDDEN, None, "a form from another origin");
    }
    let Some(caller) = crate::auth::caller_for_token(&st, f.token.trim()) else {
        let mut resp = page("Sign in", None, Some("unknown token"), r#"<p><a href="/console/login">Try again</a></p>"#);
        *resp.status_mut() = StatusCode::UNAUTHORIZED;
        return resp;
    };
    let role = match caller.role {
        crate::auth::Role::Operate => "operate",
        crate::auth::Role::Read => "read",
        crate::auth::Role::Produce => {
            return error(StatusCode::FORBIDDEN, None, "a producer's token cannot sign in to the console");
        }
    };
    let (Some(id), Some(csrf)) = (random_hex(32), random_hex(32)) else {
        return error(StatusCode::SERVICE_UNAVAILABLE, None, "no randomness available for a session");
    };
    let session = Session { id: id.clone(), name: caller.name.clone(), role: role.into(), csrf };
    let raw = serde_json::to_string(&session).unwrap_or_default();
    if let Err(e) = st.ledger.put_session(&id, &raw, SESSION_TTL).await {
        return error(StatusCode::SERVICE_UNAVAILABLE, None, &format!("the ledger is unavailable: {e}"));
    }
    tracing::info!(who = %caller.name, role, "console sign-in");
    let cookie = format!("{COOKIE}={id}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age={}", SESSION_TTL.as_secs());
    let mut resp = Redirect::to("/console").into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

pub async fn logout(State(st): State<Shared>, s: Session, headers: HeaderMap, Form(f): Form<CsrfForm>) -> Response {
    if !same_origin(&headers) || !csrf_ok(&s, &f.csrf) {
        return error(StatusCode::FORBIDDEN, Some(&s), "this form has expired: reload the page");
    }
    if !s.id.is_empty() {
        let _ = st.ledger.drop_session(&s.id).await;
    }
    let mut resp = Redirect::to("/console/login").into_response();
    let gone = format!("{COOKIE}=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0");
    if let Ok(v) = HeaderValue::from_str(&gone) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

/// Checks a posted form: from this origin, with the session's CSRF token, by an operator; the
/// refusal to answer with otherwise.
pub(super) fn refused(s: &Session, headers: &HeaderMap, csrf: &str) -> Option<Response> {
    if !same_origin(headers) || !csrf_ok(s, csrf) {
        return Some(error(
            StatusCode::FORBIDDEN,
            Some(s),
            "this form has expired or came from elsewhere: reload the page",
        ));
    }
    if !s.operates() {
        return Some(error(StatusCode::FORBIDDEN, Some(s), &format!("{} is a read-only operator", s.name)));
    }
    None
}

pub async fn act(
    State(st): State<Shared>,
    s: Session,
    headers: HeaderMap,
    Path((merchant, otn, action)): Path<(String, String, String)>,
    Form(f): Form<ActionForm>,
) -> Response {
    if let Some(resp) = refused(&s, &headers, &f.csrf) {
        return resp;
    }
    let caller = s.caller();
    let back = |notice: &str| {
        Redirect::to(&format!("/console/refund/{}/{}?notice={}", u(&merchant), u(&otn), u(notice))).into_response()
    };
    // Each action's body holds its own fields (the API refuses others).
    let body = match action.as_str() {
        "resolve" => json!({"reason": f.reason, "state": f.state, "force": f.force.as_deref() == Some("true")}),
        _ => json!({"reason": f.reason}),
    };
    let body = body.to_string().into_bytes();
    let action = match action.as_str() {
        "retry" => Action::Retry,
        "cancel" => Action::Cancel,
        "enquire" => Action::Enquire,
        "resolve" => {
            return match crate::approvals::resolve(&st, &caller, &merchant, &otn, &body).await {
                Ok(r) if r.status() == StatusCode::ACCEPTED => {
                    back("resolve as succeeded asked for: a second operator approves it under Approvals")
                }
                Ok(_) => back("resolved"),
                Err(e) => back(&format!("refused: {}", e.to_string_for_people())),
            };
        }
        other => return error(StatusCode::NOT_FOUND, Some(&s), &format!("no action {other:?}")),
    };
    match crate::operate::act(&st, &caller, &merchant, &otn, action, &body).await {
        Ok(r) => back(&format!("done: the refund is {} now", r.0.refund.state)),
        Err(e) => back(&format!("refused: {}", e.to_string_for_people())),
    }
}

pub async fn decide(
    State(st): State<Shared>,
    s: Session,
    headers: HeaderMap,
    Path((id, verdict)): Path<(String, String)>,
    Form(f): Form<CsrfForm>,
) -> Response {
    if let Some(resp) = refused(&s, &headers, &f.csrf) {
        return resp;
    }
    let approve = match verdict.as_str() {
        "approve" => true,
        "reject" => false,
        other => return error(StatusCode::NOT_FOUND, Some(&s), &format!("no verdict {other:?}")),
    };
    let body = json!({"reason": f.reason}).to_string().into_bytes();
    let notice = match crate::approvals::decide_request(&st, &s.caller(), &id, &body, approve).await {
        Ok(a) => format!("request {} is {}", a.id, a.status),
        Err(e) => format!("refused: {}", e.to_string_for_people()),
    };
    Redirect::to(&format!("/console/approvals?notice={}", u(&notice))).into_response()
}

/// The session of the person a trusted authenticating proxy says is asking (its
/// `X-Forwarded-User`, else `X-Forwarded-Email`), believed only from the addresses configured.
/// Kept per person in the ledger (for a stable CSRF token), never reachable by a cookie.
pub(crate) async fn proxy_session(parts: &mut Parts, st: &Shared) -> Option<Session> {
    let proxy = &st.config.console_proxy;
    if proxy.from.is_empty() {
        return None;
    }
    let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>()?.0.ip().to_canonical();
    if !proxy.from.contains(&peer) {
        return None;
    }
    // Each header at most once, and where both are given they must name the same person: a
    // proxy that only sets (or appends to) one of them cannot be fooled by a client's own.
    let mut named = Vec::new();
    for header in ["x-forwarded-user", "x-forwarded-email"] {
        let values: Vec<&str> = parts.headers.get_all(header).iter().filter_map(|v| v.to_str().ok()).collect();
        match values.as_slice() {
            [] => {}
            [one] if !one.trim().is_empty() => named.push(one.trim().to_owned()),
            _ => {
                tracing::warn!(header, "a proxied request named its person more than once: not signed in");
                return None;
            }
        }
    }
    if named.windows(2).any(|w| !w[0].eq_ignore_ascii_case(&w[1])) {
        tracing::warn!("a proxied request named two people: not signed in");
        return None;
    }
    let user = named.first()?.to_ascii_lowercase();
    let user = user.as_str();
    if user.len() > 128 || !user.chars().all(|c| c.is_ascii_alphanumeric() || "-_.@+".contains(c)) {
        return None;
    }
    let role = if proxy.operators.iter().any(|o| o.eq_ignore_ascii_case(user)) { "operate" } else { "read" };
    let key = format!("proxy:{user}");
    let stored = st.ledger.session(&key).await.ok().flatten().and_then(|r| serde_json::from_str::<Session>(&r).ok());
    let session = match stored {
        Some(s) if s.role == role => s,
        _ => {
            let s = Session { id: String::new(), name: user.to_owned(), role: role.into(), csrf: random_hex(32)? };
            let raw = serde_json::to_string(&s).ok()?;
            st.ledger.put_session(&key, &raw, SESSION_TTL).await.ok()?;
            s
        }
    };
    Some(Session { id: String::new(), ..session })
}

/// The audit entries of `merchant`'s refund `otn` among the newest 2 000 (entries from before
/// refunds were merchant-scoped name no merchant: kept).
pub(crate) async fn audit_of(st: &Shared, merchant: &str, otn: &str) -> Vec<ledger::AuditEntry> {
    recent_audit(st, 2_000)
        .await
        .into_iter()
        .filter(|a| a.out_trade_no == otn && (a.merchant == merchant || a.merchant.is_empty()))
        .collect()
}

/// The newest `n` audit entries (none when the ledger cannot be read: the page says so).
pub(crate) async fn recent_audit(st: &Shared, n: usize) -> Vec<ledger::AuditEntry> {
    match st.ledger.recent_audit(n).await {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(error = %e, "reading the audit trail failed");
            Vec::new()
        }
    }
}
