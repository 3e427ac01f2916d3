//! The console's HTML: escaping, the page around every view, and the pieces views share.

use axum::response::{Html, IntoResponse, Response};

use super::Session;

/// `s` escaped for HTML text and attribute values.
pub fn h(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// `s` escaped for a URL path segment or query value.
pub fn u(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A whole page: the navigation (for a signed-in operator), an optional notice, the body.
pub fn page(title: &str, session: Option<&Session>, notice: Option<&str>, body: &str) -> Response {
    let nav = match session {
        Some(s) => format!(
            r#"<nav><a href="/console">Overview</a><a href="/console/review">Needs review</a><a href="/console/refunds">Search</a><a href="/console/approvals">Approvals</a><a href="/console/webhooks">Webhooks</a><a href="/console/audit">Audit</a><span class="who" id="who">{} ({})</span><form method="post" action="/console/logout" class="inline">{}<button>Sign out</button></form></nav>"#,
            h(&s.name),
            if s.operates() { "operator" } else { "read-only" },
            csrf_field(s)
        ),
        None => String::new(),
    };
    let notice = notice.map(|n| format!(r#"<p class="notice" id="notice">{}</p>"#, h(n))).unwrap_or_default();
    let html = format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width"><title>{} · qfrefund</title><link rel="stylesheet" href="/console/app.css"></head><body><header><strong>qfrefund</strong> console</header>{nav}<main><h1>{}</h1>{notice}{body}</main></body></html>"#,
        h(title),
        h(title)
    );
    Html(html).into_response()
}

/// The hidden CSRF field every form of a signed-in operator carries.
pub fn csrf_field(s: &Session) -> String {
    format!(r#"<input type="hidden" name="csrf" value="{}">"#, h(&s.csrf))
}

/// A table: a header row, then rows of cells already escaped.
pub fn table(id: &str, head: &[&str], rows: &[Vec<String>]) -> String {
    let mut t = format!(r#"<table id="{id}"><thead><tr>"#);
    for c in head {
        t.push_str(&format!("<th>{}</th>", h(c)));
    }
    t.push_str("</tr></thead><tbody>");
    for r in rows {
        t.push_str("<tr>");
        for c in r {
            t.push_str(&format!("<td>{c}</td>"));
        }
        t.push_str("</tr>");
    }
    if rows.is_empty() {
        t.push_str(&format!(r#"<tr><td colspan="{}" class="empty">none</td></tr>"#, head.len()));
    }
    t.push_str("</tbody></table>");
    t
}

/// A link to a refund's page.
pub fn refund_link(merchant: &str, otn: &str) -> String {
    format!(r#"<a href="/console/refund/{}/{}">{}</a>"#, u(merchant), u(otn), h(otn))
}

/// `ms` since the epoch, as RFC 3339 (empty for none).
pub fn time(ms: i64) -> String {
    if ms > 0 { crate::export::rfc3339(ms) } else { String::new() }
}

/// An amount in minor units, formatted.
pub fn amount(minor: u64) -> String {
    crate::export::formatted(minor)
}

/// A plain error page with a status.
pub fn error(status: axum::http::StatusCode, session: Option<&Session>, message: &str) -> Response {
    let mut resp = page("Refused", session, Some(message), "");
    *resp.status_mut() = status;
    resp
}

/// A CSV download.
pub fn csv(body: String) -> Response {
    crate::export::download(body)
}
