//! The console over plain HTTP (the browser suite drives it in Chromium): sign-in and its cookie,
//! security headers, CSRF and origin checks, roles enforced on the server, proxy sign-in only
//! from the configured address, and every page answering.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use testkit::TestRedis;

fn client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// Signs in with `token`; the session cookie (`name=value`).
async fn sign_in(api: &Api, token: &str) -> String {
    let resp = client().post(format!("{}/console/login", api.url)).form(&[("token", token)]).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let set = resp.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    assert!(set.starts_with("__Host-qfrefund_session="), "{set}");
    for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/;"] {
        assert!(set.contains(attr), "{set}");
    }
    set.split(';').next().unwrap().to_owned()
}

async fn get(api: &Api, cookie: &str, path: &str) -> (StatusCode, String) {
    let resp = client().get(format!("{}{path}", api.url)).header(COOKIE, cookie).send().await.unwrap();
    let status = resp.status();
    let csp = resp.headers().get("content-security-policy").map(|v| v.to_str().unwrap().to_owned());
    if status == StatusCode::OK && path != "/console/export.csv" {
        assert!(csp.as_deref().is_some_and(|c| c.contains("default-src 'none'")), "{path}: {csp:?}");
    }
    (status, resp.text().await.unwrap())
}

fn csrf_of(html: &str) -> String {
    let at = html.find(r#"name="csrf" value=""#).expect("a CSRF field") + r#"name="csrf" value=""#.len();
    html[at..at + 64].to_owned()
}

#[tokio::test]
async fn the_console_signs_in_checks_every_form_and_enforces_roles() {
    let redis = TestRedis::start().unwrap();
    let api = Api::start(&redis.url(), "console").await;
    let (status, _) = api.send("POST", "/v1/refunds", Some(PRODUCER), Some(refund("RF-C1", 100))).await;
    assert_eq!(status, StatusCode::ACCEPTED);

    // Not signed in: to the sign-in page; a wrong token or a producer's: refused.
    let resp = client().get(format!("{}/console", api.url)).send().await.unwrap();
    assert_eq!((resp.status(), resp.headers()[LOCATION].to_str().unwrap()), (StatusCode::SEE_OTHER, "/console/login"));
    let resp = client().post(format!("{}/console/login", api.url)).form(&[("token", "nope")]).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = client().post(format!("{}/console/login", api.url)).form(&[("token", PRODUCER)]).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let forged = client()
        .get(format!("{}/console", api.url))
        .header(COOKIE, format!("__Host-qfrefund_session={}", "ab".repeat(32)));
    assert_eq!(forged.send().await.unwrap().status(), StatusCode::SEE_OTHER);

    // An operator: every page, with the actions a queued refund allows.
    let ann = sign_in(&api, OPERATOR).await;
    for path in ["/console", "/console/review", "/console/refunds?state=queued", "/console/approvals", "/console/audit"]
    {
        let (status, body) = get(&api, &ann, path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        assert!(body.contains("ann (operator)"), "{path}");
    }
    let (_, page) = get(&api, &ann, "/console/refund/default/RF-C1").await;
    assert!(page.contains(r#"id="do-cancel""#), "{page}");
    let (status, csv) = get(&api, &ann, "/console/export.csv?state=queued").await;
    assert_eq!(status, StatusCode::OK);
    assert!(csv.starts_with("merchant,out_trade_no") && csv.contains("default,RF-C1,queued"), "{csv}");
    let csrf = csrf_of(&page);
    let post = |cookie: &str, form: Vec<(&str, String)>| {
        client()
            .post(format!("{}/console/refund/default/RF-C1/cancel", api.url))
            .header(COOKIE, cookie.to_owned())
            .form(&form)
    };
    // Without the CSRF token, or from another origin: refused, nothing done.
    let r = post(&ann, vec![("csrf", "0".repeat(64)), ("reason", "x".into())]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = post(&ann, vec![("csrf", csrf.clone()), ("reason", "x".into())])
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(api.ledger.get("default", "RF-C1").await.unwrap().unwrap().state, ledger::State::Queued);

    // A read-only operator sees no action, and is refused when posting anyway.
    let viewer = sign_in(&api, READER).await;
    let (_, page) = get(&api, &viewer, "/console/refund/default/RF-C1").await;
    assert!(page.contains("dashboard (read-only)") && !page.contains(r#"id="do-"#), "{page}");
    let r = post(&viewer, vec![("csrf", csrf_of(&page)), ("reason", "x".into())]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(api.ledger.get("default", "RF-C1").await.unwrap().unwrap().state, ledger::State::Queued);

    // Pausing and resuming a merchant, and the webhooks page; neither for the read-only one.
    let (_, overview) = get(&api, &viewer, "/console").await;
    assert!(!overview.contains(r#"id="do-pause""#));
    assert_eq!(get(&api, &viewer, "/console/webhooks").await.0, StatusCode::OK);
    let (_, overview) = get(&api, &ann, "/console").await;
    assert!(overview.contains(r#"id="do-pause""#), "{overview}");
    assert!(overview.contains(r#"id="by-merchant""#) && overview.contains("merchant=default"), "{overview}");
    let merchant_form = |verb: &str, cookie: &str| {
        client().post(format!("{}/console/merchants/{verb}", api.url)).header(COOKIE, cookie.to_owned()).form(&[
            ("csrf", csrf.as_str()),
            ("merchant", "default"),
            ("reason", "credentials rotated"),
        ])
    };
    let r = merchant_form("pause", &ann).send().await.unwrap();
    assert!(r.headers()[LOCATION].to_str().unwrap().contains("paused"), "{:?}", r.headers());
    let (_, overview) = get(&api, &ann, "/console").await;
    assert!(overview.contains(r#"id="resume-default""#) && overview.contains("credentials rotated"), "{overview}");
    assert_eq!(merchant_form("resume", &viewer).send().await.unwrap().status(), StatusCode::FORBIDDEN);
    let r = merchant_form("resume", &ann).send().await.unwrap();
    assert!(r.headers()[LOCATION].to_str().unwrap().contains("resumed"), "{:?}", r.headers());
    let (status, hooks) = get(&api, &ann, "/console/webhooks").await;
    assert_eq!(status, StatusCode::OK);
    assert!(hooks.contains("failed-webhooks"), "{hooks}");

    // The operator's cancel, audited with their name; signing out ends the session.
    let r = post(&ann, vec![("csrf", csrf.clone()), ("reason", "customer kept it".into())]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(r.headers()[LOCATION].to_str().unwrap().contains("notice=done"), "{:?}", r.headers());
    assert_eq!(api.ledger.get("default", "RF-C1").await.unwrap().unwrap().state, ledger::State::Cancelled);
    let audit = api.ledger.audit("0", 10).await.unwrap();
    let cancel = audit.iter().find(|a| a.action == "cancel").unwrap();
    assert_eq!((cancel.who.as_str(), cancel.why.as_str(), cancel.outcome.as_str()), ("ann", "customer kept it", "ok"));
    assert!(audit.iter().any(|a| a.action == "pause" && a.who == "ann"), "{audit:?}");
    let r = client()
        .post(format!("{}/console/logout", api.url))
        .header(COOKIE, ann.clone())
        .form(&[("csrf", csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(get(&api, &ann, "/console").await.0, StatusCode::SEE_OTHER, "signed out");
}

#[tokio::test]
async fn a_trusted_proxy_signs_people_in_only_from_its_address() {
    let redis = TestRedis::start().unwrap();
    let proxy = qfrefund_api::ConsoleProxy {
        from: vec!["127.0.0.1".parse().unwrap()],
        operators: vec!["carol@example.com".into()],
    };
    let api = Api::start_proxied(&redis.url(), "console-proxy", proxy).await;
    let as_user =
        |user: &str| client().get(format!("{}/console", api.url)).header("x-forwarded-email", user.to_owned());
    let page = as_user("carol@example.com").send().await.unwrap().text().await.unwrap();
    assert!(page.contains("carol@example.com (operator)"), "{page}");
    let page = as_user("dave@example.com").send().await.unwrap().text().await.unwrap();
    assert!(page.contains("dave@example.com (read-only)"), "{page}");
    assert_eq!(as_user("bad user<script>").send().await.unwrap().status(), StatusCode::SEE_OTHER);
    // A client's own header beside the proxy's, or one given twice: nobody is signed in.
    let spoofed = as_user("dave@example.com").header("x-forwarded-user", "carol@example.com");
    assert_eq!(spoofed.send().await.unwrap().status(), StatusCode::SEE_OTHER);
    let twice = as_user("dave@example.com").header("x-forwarded-email", "carol@example.com");
    assert_eq!(twice.send().await.unwrap().status(), StatusCode::SEE_OTHER);
    let page = as_user("Carol@Example.com").send().await.unwrap().text().await.unwrap();
    assert!(page.contains("carol@example.com (operator)"), "names compared without case: {page}");

    // From an address not configured, the header means nothing.
    let other = qfrefund_api::ConsoleProxy { from: vec!["10.9.9.9".parse().unwrap()], operators: vec![] };
    let api = Api::start_proxied(&redis.url(), "console-proxy-2", other).await;
    let r = client().get(format!("{}/console", api.url)).header("x-forwarded-user", "carol").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
}
