//! The client against the simulator over real HTTP: business answers are `Ok`, and every transport
//! failure lands on the right side of "not sent" / "outcome unknown".

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use qfpay::{
    Client, ClientConfig, ClientError, ClientKey, Credentials, EnquiryRequest, RefundLookup, RefundRequest, SignAlg,
    Txdtm,
};
use qfpay_sim::args::generated_syssn;
use qfpay_sim::{Faults, SimConfig, SimHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn config(timeout_ms: u64) -> ClientConfig {
    ClientConfig {
        connect_timeout: Duration::from_secs(2),
        timeout: Duration::from_millis(timeout_ms),
        pool_max_idle_per_host: 4,
    }
}

fn client_for(url: &str, creds: Credentials, timeout_ms: u64) -> Client {
    Client::new(Client::pool(&config(timeout_ms)).unwrap(), url, creds).unwrap()
}

fn refund(n: u64, otn: &str, amount: u64) -> RefundRequest {
    RefundRequest::new(&generated_syssn(n), otn, amount, Txdtm::now(8 * 3600)).unwrap()
}

fn applied(sim: &SimHandle, otn: &str) -> u64 {
    sim.audit()["by_out_trade_no"][otn]["records"].as_u64().unwrap_or(0)
}

#[tokio::test]
async fn a_signed_refund_succeeds_and_shows_in_the_audit() {
    let sim = SimHandle::start_local(SimConfig::demo(1)).await.unwrap();
    let client = client_for(&sim.url(), SimConfig::demo_credentials(), 2_000);
    let answer = client.refund(&refund(1, "RF-OK-1", 1500)).await.unwrap();
    assert_eq!(answer.respcd(), "0000");
    assert_eq!(answer.txamt.as_deref(), Some("1500"));
    assert_eq!(answer.orig_syssn.as_deref(), Some(generated_syssn(1).as_str()));
    let audit = sim.audit();
    assert_eq!(audit["by_payment"][generated_syssn(1)]["refunded"], 1500);
    assert_eq!(audit["totals"]["refunded_amount"], 1500);
}

#[tokio::test]
async fn sha256_signatures_are_sent_with_their_header() {
    let sim = SimHandle::start_local(SimConfig::demo(1)).await.unwrap();
    let creds = Credentials { alg: SignAlg::Sha256, ..SimConfig::demo_credentials() };
    let client = client_for(&sim.url(), creds, 2_000);
    assert_eq!(client.refund(&refund(1, "RF-SHA", 100)).await.unwrap().respcd(), "0000");
}

#[tokio::test]
async fn a_wrong_key_is_a_business_answer_1108_not_a_transport_error() {
    let sim = SimHandle::start_local(SimConfig::demo(1)).await.unwrap();
    let creds = Credentials { key: ClientKey::new("WRONG"), ..SimConfig::demo_credentials() };
    let client = client_for(&sim.url(), creds, 2_000);
    assert_eq!(client.refund(&refund(1, "RF-BADKEY", 100)).await.unwrap().respcd(), "1108");
    assert_eq!(applied(&sim, "RF-BADKEY"), 0);
}

#[tokio::test]
async fn connection_refused_is_provably_not_sent() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let client = client_for(&url, SimConfig::demo_credentials(), 2_000);
    let err = client.refund(&refund(1, "RF-REFUSED", 100)).await.unwrap_err();
    assert!(matches!(err, ClientError::NotSent { .. }), "{err:?}");
    assert!(!err.may_have_been_sent());
}

#[tokio::test]
async fn apply_then_hang_past_the_timeout_is_outcome_unknown_and_the_refund_did_happen() {
    let sim = SimHandle::start_local(SimConfig {
        faults: Faults { hang_after_apply: 1.0, hang_ms: 5_000, ..Faults::default() },
        ..SimConfig::demo(1)
    })
    .await
    .unwrap();
    let client = client_for(&sim.url(), SimConfig::demo_credentials(), 300);
    let err = client.refund(&refund(1, "RF-HANG", 100)).await.unwrap_err();
    assert!(matches!(err, ClientError::OutcomeUnknown { status: None, .. }), "{err:?}");
    assert!(err.may_have_been_sent());
    assert_eq!(applied(&sim, "RF-HANG"), 1);
}

#[tokio::test]
async fn apply_then_drop_is_outcome_unknown_and_the_refund_did_happen() {
    let sim = SimHandle::start_local(SimConfig {
        faults: Faults { drop_after_apply: 1.0, ..Faults::default() },
        ..SimConfig::demo(1)
    })
    .await
    .unwrap();
    let client = client_for(&sim.url(), SimConfig::demo_credentials(), 2_000);
    let err = client.refund(&refund(1, "RF-DROP", 100)).await.unwrap_err();
    assert!(matches!(err, ClientError::OutcomeUnknown { .. }), "{err:?}");
    assert_eq!(applied(&sim, "RF-DROP"), 1);
    // The same id again is QFPay's duplicate code: the worker must enquire, never re-mint.
    sim.set_faults(Faults::default()).unwrap();
    assert_eq!(client.refund(&refund(1, "RF-DROP", 100)).await.unwrap().respcd(), "1102");
}

#[tokio::test]
async fn http_5xx_is_outcome_unknown_with_its_status_and_429_is_rate_limited() {
    let sim = SimHandle::start_local(SimConfig {
        faults: Faults { error_5xx: 1.0, ..Faults::default() },
        ..SimConfig::demo(1)
    })
    .await
    .unwrap();
    let client = client_for(&sim.url(), SimConfig::demo_credentials(), 2_000);
    let err = client.refund(&refund(1, "RF-5XX", 100)).await.unwrap_err();
    assert!(matches!(err, ClientError::OutcomeUnknown { status: Some(500), .. }), "{err:?}");
    sim.set_faults(Faults { rate_limit_429: 1.0, ..Faults::default() }).unwrap();
    let err = client.refund(&refund(1, "RF-429", 100)).await.unwrap_err();
    assert!(matches!(err, ClientError::RateLimited { .. }), "{err:?}");
    assert!(!err.may_have_been_sent());
    assert_eq!(sim.audit()["totals"]["recorded"], 0);
}

/// A server that answers with raw bytes, for bodies no well-behaved server would send.
async fn raw_server(response: &'static [u8]) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let mut buf = vec![0u8; 8192];
            let _ = sock.read(&mut buf).await;
            let _ = sock.write_all(response).await;
            let _ = sock.shutdown().await;
        }
    });
    url
}

#[tokio::test]
async fn a_body_that_stops_midway_or_is_not_json_is_outcome_unknown() {
    let cut =
        raw_server(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{\"respcd\":\"00")
            .await;
    let html = raw_server(b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\n<html></html>").await;
    let no_code = raw_server(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}").await;
    for url in [cut, html, no_code] {
        let client = client_for(&url, SimConfig::demo_credentials(), 2_000);
        let err = client.refund(&refund(1, "RF-RAW", 100)).await.unwrap_err();
        assert!(matches!(err, ClientError::OutcomeUnknown { .. }), "{url}: {err:?}");
    }
}

#[tokio::test]
async fn processing_refunds_become_final_in_enquiries() {
    let sim = SimHandle::start_local(SimConfig {
        faults: Faults { processing: 1.0, processing_ms: 300, ..Faults::default() },
        ..SimConfig::demo(1)
    })
    .await
    .unwrap();
    let client = client_for(&sim.url(), SimConfig::demo_credentials(), 2_000);
    let req = refund(1, "RF-PROC", 700);
    assert_eq!(client.refund(&req).await.unwrap().respcd(), "1145");
    let now = Txdtm::now(8 * 3600);
    let window = Some((Txdtm::from_unix(now.to_unix(8 * 3600) - 86_400, 8 * 3600), now));
    let enquiry = EnquiryRequest::new(&[], &["RF-PROC"], window).unwrap();
    let first = client.enquire(&enquiry).await.unwrap();
    assert!(first.is_ok());
    assert!(matches!(first.refund("RF-PROC", &generated_syssn(1), 700), RefundLookup::InProgress(_)), "{first:?}");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let later = client.enquire(&enquiry).await.unwrap();
    match later.refund("RF-PROC", &generated_syssn(1), 700) {
        RefundLookup::Succeeded(r) => assert_eq!(r.txamt.as_deref(), Some("700")),
        other => panic!("{other:?}"),
    }
    assert_eq!(sim.audit()["by_payment"][generated_syssn(1)]["refunded"], 700);
}

#[test]
fn neither_client_nor_credentials_show_the_key() {
    let creds = Credentials { key: ClientKey::new("SUPERSECRETKEY123"), ..SimConfig::demo_credentials() };
    let client = Client::new(pool(), "http://127.0.0.1:1", creds.clone()).unwrap();
    for shown in [format!("{client:?}"), format!("{creds:?}"), format!("{:?}", creds.key)] {
        assert!(!shown.contains("SUPERSECRETKEY123"), "{shown}");
    }
    let err = Client::new(pool(), "ftp://x", creds).unwrap_err();
    assert!(!err.to_string().contains("SUPERSECRETKEY123"));
}

fn pool() -> reqwest::Client {
    Client::pool(&ClientConfig::default()).unwrap()
}
