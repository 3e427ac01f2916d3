//! The operator console in a real browser: headless Chromium, driven over WebDriver, against
//! `qfrefund serve` and a worker, both real processes, and the QFPay simulator. An operator
//! finds a refund the simulator sent to needs_review, retries it, brings its enquiry forward
//! and sees it succeed; a success resolved by one operator waits for a second one's approval; a
//! read-only operator sees no action and is refused when posting anyway; the CSV export holds
//! what it should. Screenshots of each page go to `target/console-screenshots/`.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ledger::{NewRefund, State};
use qfpay_sim::args::generated_syssn;
use qfrefund_e2e::webdriver::Browser;
use qfrefund_e2e::{Scratch, WorkerProcess, env_for, ledger, qfrefund_bin};
use testkit::{RedisServer, SimConfig, SimHandle, unique_namespace};

const ANN: &str = "ann-operator-token-0001";
const BOB: &str = "bob-operator-token-0002";
const VIEWER: &str = "viewer-reader-token-003";

/// `qfrefund serve` on a free port; killed on drop.
struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(env: &HashMap<String, String>, log: PathBuf) -> (Serve, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let out = std::fs::File::create(log).unwrap();
    let child = Command::new(qfrefund_bin())
        .arg("serve")
        .env_clear()
        .envs(env)
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("QFREFUND_API_LISTEN", format!("127.0.0.1:{port}"))
        .env("QFREFUND_API_TOKENS", format!("ann:operate:{ANN},bob:operate:{BOB},viewer:read:{VIEWER}"))
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    // `localhost`: where a browser keeps a Secure cookie without TLS.
    (Serve(child), format!("http://localhost:{port}"))
}

fn shots() -> PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("target"));
    target.join("console-screenshots")
}

async fn sign_in(b: &Browser, url: &str, token: &str) {
    b.delete_cookies().await;
    b.goto(&format!("{url}/console/login")).await;
    b.type_into("#login input[name=token]", token).await;
    b.click("#login button").await;
    for _ in 0..50 {
        if b.has("#who").await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("not signed in: {} {}", b.url().await, b.source().await);
}

async fn wait_state(l: &ledger::Ledger, otn: &str, want: State, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let now = l.get("default", otn).await.unwrap().map(|r| r.state);
        if now == Some(want) {
            return;
        }
        assert!(Instant::now() < deadline, "{otn} is {now:?}, not {want}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_resolve_refunds_in_the_console_in_a_real_browser() {
    let scratch = Scratch::new("console");
    let redis = RedisServer::start().unwrap();
    let mut cfg = SimConfig::demo(4);
    // QFPay takes the refunds as processing and settles them 2.5 s later: past the 1 s the
    // worker waits, so they go to needs_review first.
    cfg.faults.processing = 1.0;
    cfg.faults.processing_ms = 2_500;
    let sim = SimHandle::start_local(cfg).await.unwrap();
    let ns = unique_namespace("console");
    let mut env = env_for(&redis.url(), &ns, &sim.url());
    env.insert("QFREFUND_MAX_AGE_S".into(), "1".into());
    let l = ledger(&redis.url(), &ns).await;
    l.enqueue(NewRefund::new(&generated_syssn(1), "RF-UI1", 1_250)).await.unwrap();
    l.enqueue(NewRefund::new(&generated_syssn(2), "RF-UI2", 3_000)).await.unwrap();
    let _w = WorkerProcess::spawn(&env, scratch.path("worker.log"));
    wait_state(&l, "RF-UI1", State::NeedsReview, Duration::from_secs(30)).await;
    wait_state(&l, "RF-UI2", State::NeedsReview, Duration::from_secs(30)).await;
    let (_serve, url) = serve(&env, scratch.path("serve.log"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while reqwest::get(format!("{url}/healthz")).await.is_err() {
        assert!(Instant::now() < deadline, "serve did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let dir = shots();
    let b = Browser::start().await;

    // Ann signs in, finds the refund in the needs-review queue and opens it.
    sign_in(&b, &url, ANN).await;
    assert!(b.text("#who").await.contains("ann (operator)"));
    b.screenshot(&dir.join("overview.png")).await;
    b.click("nav a[href='/console/review']").await;
    assert!(b.text("#review").await.contains("RF-UI1"));
    b.screenshot(&dir.join("needs-review.png")).await;
    b.click("#review a[href$='/RF-UI1']").await;
    assert_eq!(b.text("#state").await, "needs_review");

    // Retry: it was sent, so it is enquired first (pending); bring that enquiry forward; it succeeds.
    b.type_into("#do-retry input[name=reason]", "QFPay settled it late").await;
    b.click("#do-retry button").await;
    assert!(b.text("#notice").await.contains("pending"), "{}", b.source().await);
    if b.has("#do-enquire").await {
        b.type_into("#do-enquire input[name=reason]", "customer on the phone").await;
        b.click("#do-enquire button").await;
        b.find("#notice").await;
    }
    wait_state(&l, "RF-UI1", State::Succeeded, Duration::from_secs(20)).await;
    b.goto(&format!("{url}/console/refund/default/RF-UI1")).await;
    assert_eq!(b.text("#state").await, "succeeded");
    assert!(b.text("#refund-audit").await.contains("ann"), "the audit names her");
    b.screenshot(&dir.join("refund.png")).await;

    // A success resolved by Ann waits for a second operator.
    b.goto(&format!("{url}/console/refund/default/RF-UI2")).await;
    b.click("#do-resolve option[value=succeeded]").await;
    b.type_into("#do-resolve input[name=reason]", "QFPay ticket 77 confirms it").await;
    b.click("#do-resolve button").await;
    assert!(b.text("#notice").await.contains("second operator"), "{}", b.source().await);
    assert_eq!(l.get("default", "RF-UI2").await.unwrap().unwrap().state, State::NeedsReview);
    b.goto(&format!("{url}/console/approvals")).await;
    assert!(!b.has("#approvals form").await, "not hers to approve");
    sign_in(&b, &url, BOB).await;
    b.goto(&format!("{url}/console/approvals")).await;
    b.screenshot(&dir.join("approvals.png")).await;
    b.type_into("#approvals form[id^=approve] input[name=reason]", "ticket checked").await;
    b.click("#approvals form[id^=approve] button").await;
    assert!(b.text("#notice").await.contains("done"), "{}", b.source().await);
    wait_state(&l, "RF-UI2", State::Succeeded, Duration::from_secs(5)).await;
    let audit = l.audit("0", 100).await.unwrap();
    assert!(audit.iter().any(|a| a.out_trade_no == "RF-UI2" && a.who == "bob (approving ann)"), "{audit:?}");

    // A read-only operator sees no action, and posting anyway is refused.
    sign_in(&b, &url, VIEWER).await;
    b.goto(&format!("{url}/console/refund/default/RF-UI2")).await;
    assert!(b.text("#who").await.contains("read-only"));
    assert!(!b.has("form.action").await, "no action for a read-only operator");
    b.run(
        "const f = document.createElement('form'); f.method = 'post'; f.action = '/console/refund/default/RF-UI2/retry';
         const c = document.createElement('input'); c.name = 'csrf'; c.value = document.querySelector('input[name=csrf]').value;
         const r = document.createElement('input'); r.name = 'reason'; r.value = 'sneaky';
         f.append(c, r); document.body.append(f); f.submit();",
    )
    .await;
    assert!(b.text("#notice").await.contains("read-only"), "{}", b.source().await);

    // Search, and its CSV export (read with the browser's own session).
    b.goto(&format!("{url}/console/refunds?state=succeeded")).await;
    assert!(b.text("#results").await.contains("RF-UI2"));
    b.screenshot(&dir.join("search.png")).await;
    let cookie = b.cookie("__Host-qfrefund_session").await;
    let csv = reqwest::Client::new()
        .get(format!("{url}/console/export.csv?state=succeeded"))
        .header("cookie", format!("__Host-qfrefund_session={cookie}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let rows: Vec<&str> = csv.lines().collect();
    assert!(rows[0].starts_with("merchant,out_trade_no,state,syssn,txamt,txamt_formatted"), "{csv}");
    let ui1 = rows.iter().find(|r| r.contains("RF-UI1")).unwrap_or_else(|| panic!("{csv}"));
    let cells: Vec<&str> = ui1.split(',').collect();
    assert_eq!((cells[2], cells[4], cells[5]), ("succeeded", "1250", "12.50"), "{ui1}");
    assert!(cells[10].ends_with('Z') && cells[10].contains('T'), "RFC 3339: {ui1}");
    b.goto(&format!("{url}/console/audit")).await;
    b.screenshot(&dir.join("audit.png")).await;
    sign_in(&b, &url, ANN).await;
    b.goto(&format!("{url}/console")).await;
    assert_eq!(b.text("#count-succeeded b").await, "2");
    b.screenshot(&dir.join("overview.png")).await;
    b.quit().await;
    // Kept for docs/console.md when asked (`UPDATE_SCREENSHOTS=1`).
    if std::env::var("UPDATE_SCREENSHOTS").is_ok() {
        let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("docs/console");
        std::fs::create_dir_all(&docs).unwrap();
        for f in ["overview.png", "refund.png", "approvals.png"] {
            std::fs::copy(dir.join(f), docs.join(f)).unwrap();
        }
    }
}
