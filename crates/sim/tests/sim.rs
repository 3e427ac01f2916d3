//! The simulator as a user's test would see it: over real HTTP, through the `qfpay` client.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use qfpay::{Client, ClientConfig, ClientError, Credentials, EnquiryRequest, RefundLookup, RefundRequest, Txdtm};
use qfpay_sim::args::generated_syssn;
use qfpay_sim::{Faults, Merchant, PaymentSeed, SimConfig, SimHandle};

const HK: i32 = 8 * 3600;

fn client(sim: &SimHandle, timeout_ms: u64) -> Client {
    client_with(sim, SimConfig::demo_credentials(), timeout_ms)
}

fn client_with(sim: &SimHandle, creds: Credentials, timeout_ms: u64) -> Client {
    let cfg = ClientConfig { timeout: Duration::from_millis(timeout_ms), ..ClientConfig::default() };
    Client::new(Client::pool(&cfg).unwrap(), &sim.url(), creds).unwrap()
}

fn req(payment: u64, otn: &str, amount: u64) -> RefundRequest {
    RefundRequest::new(&generated_syssn(payment), otn, amount, Txdtm::now(HK)).unwrap()
}

async fn start(faults: Faults, payments: u64) -> SimHandle {
    SimHandle::start_local(SimConfig { faults, ..SimConfig::demo(payments) }).await.unwrap()
}

fn fired(sim: &SimHandle, fault: &str) -> u64 {
    sim.stats()["faults"][fault].as_u64().unwrap_or(0)
}

/// `n` draws at probability `p` land within five standard deviations of `n·p`.
fn assert_rate(name: &str, hits: u64, n: u64, p: f64) {
    let (mean, sd) = (n as f64 * p, (n as f64 * p * (1.0 - p)).sqrt());
    assert!((hits as f64 - mean).abs() <= 5.0 * sd + 1.0, "{name}: {hits} of {n}, expected about {mean}");
}

#[tokio::test]
async fn each_refund_fault_happens_at_its_configured_rate() {
    const N: u64 = 300;
    let cases: Vec<(&str, Faults)> = vec![
        ("error_5xx", Faults { error_5xx: 0.3, ..Faults::default() }),
        ("rate_limit_429", Faults { rate_limit_429: 0.2, ..Faults::default() }),
        ("code_1269", Faults { code_1269: 0.25, ..Faults::default() }),
        ("processing", Faults { processing: 0.4, processing_ms: 60_000, ..Faults::default() }),
        ("drop_after_apply", Faults { drop_after_apply: 0.3, ..Faults::default() }),
        ("hang_after_apply", Faults { hang_after_apply: 0.3, hang_ms: 50, ..Faults::default() }),
    ];
    for (name, faults) in cases {
        let p = [
            faults.error_5xx,
            faults.rate_limit_429,
            faults.code_1269,
            faults.processing,
            faults.drop_after_apply,
            faults.hang_after_apply,
        ]
        .into_iter()
        .fold(0.0, f64::max);
        let hang = Duration::from_millis(faults.hang_ms);
        let sim = start(faults, N).await;
        let c = client(&sim, 5_000);
        let (mut ok, mut unknown, mut limited, mut answers_1269, mut processing) = (0u64, 0u64, 0u64, 0u64, 0u64);
        let mut slow = 0;
        for i in 1..=N {
            let started = std::time::Instant::now();
            let answer = c.refund(&req(i, &format!("RF{i}"), 100)).await;
            if started.elapsed() >= hang {
                slow += 1;
            }
            match answer {
                Ok(a) if a.respcd() == "0000" => ok += 1,
                Ok(a) if a.respcd() == "1269" => answers_1269 += 1,
                Ok(a) if a.respcd() == "1145" => processing += 1,
                Ok(a) => panic!("{name}: unexpected {a:?}"),
                Err(ClientError::OutcomeUnknown { .. }) => unknown += 1,
                Err(ClientError::RateLimited { .. }) => limited += 1,
                Err(e) => panic!("{name}: {e}"),
            }
        }
        let hits = fired(&sim, name);
        assert_rate(name, hits, N, p);
        // What the client saw agrees with what the simulator says it did.
        if name == "hang_after_apply" {
            assert!(slow >= hits && ok == N, "every hung answer came late ({slow} slow, {hits} hung)");
            continue;
        }
        let seen = match name {
            "error_5xx" | "drop_after_apply" => unknown,
            "rate_limit_429" => limited,
            "code_1269" => answers_1269,
            _ => processing,
        };
        assert_eq!(seen, hits, "{name}");
        assert_eq!(ok + seen, N, "{name}: every other request succeeded");
        // Applied refunds: all but those rejected before applying.
        let recorded = sim.audit()["totals"]["recorded"].as_u64().unwrap();
        let rejected = if matches!(name, "error_5xx" | "rate_limit_429" | "code_1269") { hits } else { 0 };
        assert_eq!(recorded, N - rejected, "{name}");
    }
}

#[tokio::test]
async fn enquiry_5xx_happens_at_its_rate_and_latency_is_added() {
    let sim = start(Faults { enquiry_5xx: 0.3, latency_ms: 5, ..Faults::default() }, 1).await;
    let c = client(&sim, 2_000);
    let e = EnquiryRequest::new(&[&generated_syssn(1)], &[], None).unwrap();
    let started = std::time::Instant::now();
    let mut failed = 0;
    for _ in 0..200 {
        if let Err(ClientError::OutcomeUnknown { status: Some(502), .. }) = c.enquire(&e).await {
            failed += 1;
        }
    }
    assert!(started.elapsed() >= Duration::from_millis(200 * 5));
    assert_eq!(failed, fired(&sim, "enquiry_5xx"));
    assert_rate("enquiry_5xx", failed, 200, 0.3);
}

#[tokio::test]
async fn audit_totals_are_exact() {
    let sim = start(Faults::default(), 3).await;
    let c = client(&sim, 2_000);
    let plan = [(1, 100), (1, 250), (1, 650), (2, 99_999), (3, 1)];
    for (n, (payment, amount)) in plan.iter().enumerate() {
        assert_eq!(c.refund(&req(*payment, &format!("RF-A{n}"), *amount)).await.unwrap().respcd(), "0000");
    }
    // A rejected refund changes nothing.
    assert_eq!(c.refund(&req(2, "RF-A-over", 2)).await.unwrap().respcd(), "1272");
    let audit = sim.audit();
    assert_eq!(audit["by_payment"][generated_syssn(1)]["refunded"], 1000);
    assert_eq!(audit["by_payment"][generated_syssn(1)]["refunds"], 3);
    assert_eq!(audit["by_payment"][generated_syssn(2)]["refunded"], 99_999);
    assert_eq!(audit["by_payment"][generated_syssn(3)]["refunded"], 1);
    assert_eq!(audit["totals"]["refunded_amount"], 1000 + 99_999 + 1);
    assert_eq!(audit["totals"]["succeeded"], 5);
    assert_eq!(audit["by_out_trade_no"]["RF-A1"]["refunded"], 250);
    assert!(audit["by_out_trade_no"].get("RF-A-over").is_none());
    assert_eq!(audit["violations"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn duplicate_out_trade_no_and_over_refund_are_rejected() {
    let sim = start(Faults::default(), 2).await;
    let c = client(&sim, 2_000);
    assert_eq!(c.refund(&req(1, "RF-D", 60_000)).await.unwrap().respcd(), "0000");
    // Same id, even for another payment or amount: duplicate.
    assert_eq!(c.refund(&req(1, "RF-D", 60_000)).await.unwrap().respcd(), "1102");
    assert_eq!(c.refund(&req(2, "RF-D", 1)).await.unwrap().respcd(), "1102");
    // A payment's own out_trade_no is taken too (unique across payments and refunds).
    assert_eq!(c.refund(&req(2, "PAY2", 1)).await.unwrap().respcd(), "1102");
    // More than the remainder (40 000 left).
    let over = c.refund(&req(1, "RF-D2", 40_001)).await.unwrap();
    assert_eq!(over.respcd(), "1272");
    assert_eq!(over.syssn, None);
    assert_eq!(c.refund(&req(1, "RF-D3", 40_000)).await.unwrap().respcd(), "0000");
    assert_eq!(c.refund(&req(1, "RF-D4", 1)).await.unwrap().respcd(), "1272");
    let audit = sim.audit();
    assert_eq!(audit["by_payment"][generated_syssn(1)]["refunded"], 100_000);
    assert_eq!(audit["by_out_trade_no"]["RF-D"]["records"], 1);
}

#[tokio::test]
async fn unknown_unpaid_and_busy_payments_are_rejected() {
    let mut config = SimConfig::demo(1);
    config.payments.push(PaymentSeed { respcd: "1145".into(), ..qfpay_sim::args::generated_payment(2, 500) });
    config.faults = Faults { processing: 1.0, processing_ms: 60_000, ..Faults::default() };
    let sim = SimHandle::start_local(config).await.unwrap();
    let c = client(&sim, 2_000);
    assert_eq!(c.refund(&req(99, "RF-U", 1)).await.unwrap().respcd(), "1136");
    assert_eq!(c.refund(&req(2, "RF-U", 1)).await.unwrap().respcd(), "1261");
    assert_eq!(c.refund(&req(1, "RF-B1", 1)).await.unwrap().respcd(), "1145");
    // One refund in flight per payment.
    let busy = c.refund(&req(1, "RF-B2", 1)).await.unwrap();
    assert_eq!(busy.respcd(), "1143");
    assert!(busy.resperr.unwrap().contains("processing requests"));
    // Processing refunds hold their amount against the remainder.
    assert_eq!(sim.audit()["totals"]["recorded"], 1);
}

#[tokio::test]
async fn processing_refunds_can_end_failed_and_free_their_amount() {
    let faults = Faults {
        processing: 1.0,
        processing_ms: 100,
        processing_fail: 1.0,
        processing_fail_code: "1155".into(),
        ..Faults::default()
    };
    let sim = start(faults, 1).await;
    let c = client(&sim, 2_000);
    assert_eq!(c.refund(&req(1, "RF-PF", 100_000)).await.unwrap().respcd(), "1145");
    tokio::time::sleep(Duration::from_millis(150)).await;
    let e = EnquiryRequest::new(&[], &["RF-PF"], None).unwrap();
    match c.enquire(&e).await.unwrap().refund("RF-PF", &generated_syssn(1), 100_000) {
        RefundLookup::Other(r) => assert_eq!(r.respcd(), "1155"),
        other => panic!("{other:?}"),
    }
    sim.set_faults(Faults::default()).unwrap();
    assert_eq!(c.refund(&req(1, "RF-PF2", 100_000)).await.unwrap().respcd(), "0000");
}

#[tokio::test]
async fn the_nightly_window_answers_1265_unless_switched_off() {
    let mut config = SimConfig::demo(1);
    config.quiet_window = true;
    let sim = SimHandle::start_local(config).await.unwrap();
    let c = client(&sim, 2_000);
    // Move the simulator's clock to 23:45 HK time today.
    let now = qfpay::time::unix_now();
    let local_midnight = now - (now + i64::from(HK)).rem_euclid(86_400);
    let target = local_midnight + 23 * 3600 + 45 * 60;
    sim.set_clock_offset_ms((target - now) * 1000);
    assert_eq!(c.refund(&req(1, "RF-N", 1)).await.unwrap().respcd(), "1265");
    sim.set_clock_offset_ms((target - now + 3600) * 1000); // 00:45
    assert_eq!(c.refund(&req(1, "RF-N", 1)).await.unwrap().respcd(), "0000");
}

#[tokio::test]
async fn agent_accounts_must_send_their_mchid() {
    let mut config = SimConfig::demo(1);
    config.merchants = vec![Merchant { mchid: Some("MCH01".into()), ..config.merchants[0].clone() }];
    let sim = SimHandle::start_local(config).await.unwrap();
    let c = client(&sim, 2_000);
    assert_eq!(c.refund(&req(1, "RF-M", 1)).await.unwrap().respcd(), "1104");
    let with = req(1, "RF-M", 1).with_mchid(Some("MCH01")).unwrap();
    assert_eq!(c.refund(&with).await.unwrap().respcd(), "0000");
    let wrong = req(1, "RF-M2", 1).with_mchid(Some("MCH02")).unwrap();
    assert_eq!(c.refund(&wrong).await.unwrap().respcd(), "1104");
}

#[tokio::test]
async fn enquiries_without_a_window_search_only_the_current_month() {
    let sim = start(Faults::default(), 1).await;
    let c = client(&sim, 2_000);
    sim.set_clock_offset_ms(-40 * 86_400 * 1000); // the refund happens ~40 days ago
    let r = c.refund(&req(1, "RF-OLD", 5)).await.unwrap();
    let refund_syssn = r.syssn.clone().unwrap();
    sim.set_clock_offset_ms(0);
    let by_id = EnquiryRequest::new(&[], &["RF-OLD"], None).unwrap();
    assert_eq!(c.enquire(&by_id).await.unwrap().refund("RF-OLD", &generated_syssn(1), 5), RefundLookup::NotFound);
    let now = Txdtm::now(HK);
    let from = Txdtm::from_unix(now.to_unix(HK) - 60 * 86_400, HK);
    let windowed = EnquiryRequest::new(&[], &["RF-OLD"], Some((from, now))).unwrap();
    assert!(matches!(
        c.enquire(&windowed).await.unwrap().refund("RF-OLD", &generated_syssn(1), 5),
        RefundLookup::Succeeded(_)
    ));
    let by_syssn = EnquiryRequest::new(&[&refund_syssn], &[], None).unwrap();
    assert!(matches!(
        c.enquire(&by_syssn).await.unwrap().refund("RF-OLD", &generated_syssn(1), 5),
        RefundLookup::Succeeded(_)
    ));
}

#[tokio::test]
async fn admin_endpoints_change_faults_add_payments_and_serve_the_audit() {
    let sim = start(Faults::default(), 0).await;
    let http = reqwest::Client::new();
    let url = sim.url();
    let added: serde_json::Value = http
        .post(format!("{url}/_sim/payments"))
        .json(&serde_json::json!([{"syssn": "77", "txamt": 500}]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(added["added"], 1);
    let bad = http.post(format!("{url}/_sim/faults")).json(&serde_json::json!({"processing": 2})).send().await.unwrap();
    assert_eq!(bad.status(), 422);
    let faults: Faults = http
        .post(format!("{url}/_sim/faults"))
        .json(&serde_json::json!({"processing": 1.0, "processing_ms": 50}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(faults.processing, 1.0);
    assert_eq!(sim.faults().processing_ms, 50);
    let c = client(&sim, 2_000);
    let r = RefundRequest::new("77", "RF-ADMIN", 500, Txdtm::now(HK)).unwrap();
    assert_eq!(c.refund(&r).await.unwrap().respcd(), "1145");
    tokio::time::sleep(Duration::from_millis(80)).await;
    let audit: serde_json::Value = http.get(format!("{url}/_sim/audit")).send().await.unwrap().json().await.unwrap();
    assert_eq!(audit["by_payment"]["77"]["refunded"], 500);
    assert_eq!(audit["refunds"][0]["state"], "succeeded");
}

#[tokio::test]
async fn a_paused_simulator_holds_requests_until_resumed() {
    let sim = start(Faults::default(), 1).await;
    sim.set_faults(Faults { paused: true, ..Faults::default() }).unwrap();
    let c = client(&sim, 300);
    let err = c.refund(&req(1, "RF-P", 1)).await.unwrap_err();
    assert!(matches!(err, ClientError::OutcomeUnknown { .. }), "{err:?}");
    assert_eq!(sim.audit()["totals"]["recorded"], 0);
    // Resumed, the held request goes through although its client gave up: exactly why a timeout
    // must be settled by enquiry, and a resend of the same id is QFPay's duplicate code.
    sim.set_faults(Faults::default()).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(sim.audit()["by_out_trade_no"]["RF-P"]["refunded"], 1);
    assert_eq!(c.refund(&req(1, "RF-P", 1)).await.unwrap().respcd(), "1102");
    assert_eq!(c.refund(&req(1, "RF-P2", 1)).await.unwrap().respcd(), "0000");
}

#[tokio::test]
async fn the_binary_serves_generated_payments() {
    use std::io::{BufRead, BufReader};
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_qfpay-sim"))
        .args(["--listen", &format!("127.0.0.1:{port}"), "--generate", "3", "--quiet-window", "off"])
        .env_remove("QFPAY_CLIENT_KEY")
        .env_remove("QFPAY_APP_CODE")
        .env_remove("QFPAY_MCHID")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert!(line.contains("3 payment(s)"), "{line}");
    assert!(!line.contains(qfpay_sim::args::DEMO_CLIENT_KEY));
    let url = format!("http://127.0.0.1:{port}");
    let c = Client::new(Client::pool(&ClientConfig::default()).unwrap(), &url, SimConfig::demo_credentials()).unwrap();
    let answer = c.refund(&req(3, "RF-BIN", 10)).await;
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(answer.unwrap().respcd(), "0000");
}

#[test]
fn payments_load_from_json_and_csv_files() {
    let dir = std::env::temp_dir().join(format!("qfpay-sim-payments-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("p.json");
    std::fs::write(&json, r#"[{"syssn":"111","txamt":500},{"syssn":"112","txamt":7,"respcd":"1145"}]"#).unwrap();
    let got = qfpay_sim::args::load_payments(&json).unwrap();
    assert_eq!((got.len(), got[1].respcd.as_str()), (2, "1145"));
    let csv = dir.join("p.csv");
    std::fs::write(&csv, "\u{feff}syssn,txamt,out_trade_no\r\n211,900,PAY-A\r\n212,1000,\r\n").unwrap();
    let got = qfpay_sim::args::load_payments(&csv).unwrap();
    assert_eq!(
        (got[0].txamt, got[0].out_trade_no.as_deref(), got[1].out_trade_no.as_deref()),
        (900, Some("PAY-A"), None)
    );
    std::fs::write(&csv, "syssn,amount\n1,2\n").unwrap();
    assert!(qfpay_sim::args::load_payments(&csv).unwrap_err().to_string().contains("syssn and txamt"));
    std::fs::write(&csv, "syssn,txamt\n1,-2\n").unwrap();
    assert!(format!("{:#}", qfpay_sim::args::load_payments(&csv).unwrap_err()).contains("line 2"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Enquiries are answered from indexes (by `syssn` and `out_trade_no`), so a load test's cost does
/// not grow with what the simulator holds; each record is listed once however it was named.
#[tokio::test]
async fn an_enquiry_finds_each_record_once_by_any_of_its_ids_among_many() {
    let sim = start(Faults::default(), 600).await;
    let c = client(&sim, 2_000);
    let mut last = None;
    for i in 1..=300 {
        last = Some(c.refund(&req(i, &format!("RF-MANY-{i}"), 5)).await.unwrap());
    }
    let refund_syssn = last.unwrap().syssn.unwrap();
    let payment = generated_syssn(300);
    let both = EnquiryRequest::new(&[&refund_syssn, &payment], &["RF-MANY-300"], None).unwrap();
    let answer = c.enquire(&both).await.unwrap();
    let refunds = answer.data.iter().filter(|r| r.out_trade_no.as_deref() == Some("RF-MANY-300")).count();
    let payments = answer.data.iter().filter(|r| r.syssn.as_deref() == Some(payment.as_str())).count();
    assert_eq!((refunds, payments, answer.data.len()), (1, 1, 2), "{:?}", answer.data);
    let none = EnquiryRequest::new(&[], &["RF-NOBODY"], None).unwrap();
    assert!(c.enquire(&none).await.unwrap().data.is_empty());
    let one = EnquiryRequest::new(&[], &["RF-MANY-17"], None).unwrap();
    assert!(matches!(
        c.enquire(&one).await.unwrap().refund("RF-MANY-17", &generated_syssn(17), 5),
        RefundLookup::Succeeded(_)
    ));
}
