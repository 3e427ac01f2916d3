//! The PostgreSQL sink against a real PostgreSQL server (initdb + pg_ctl on a free port): every
//! field round-trips, a refund written again is not duplicated, finance can query it in SQL.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use ledger::State;
use ledger::refund::timeline::TimelineEntry;
use qfrefund_archive::{ArchivedRefund, Sink, Written};
use testkit::PostgresServer;

fn full(otn: &str, archived_at: i64) -> ArchivedRefund {
    // Every field a record can hold, texts with quotes, non-ASCII and a tab.
    let fields: BTreeMap<String, String> = [
        ("out_trade_no", otn),
        ("syssn", "20261202000000000000000001"),
        ("txamt", "1234"),
        ("orig_txamt", "5000"),
        ("mchid", "MCH9"),
        ("udid", "till-1"),
        ("merchant", "shop-a"),
        ("payload_hash", "4cb0335dac9694f7f39a1d14dc9c4e8b0177d93ef76f7bce8adc774b3faf8cee"),
        ("state", "succeeded"),
        ("fence", "1796186923954"),
        ("submits", "2"),
        ("enquiries", "3"),
        ("retries", "1"),
        ("not_found", "0"),
        ("created_at", "1796186922189"),
        ("updated_at", "1796186923966"),
        ("next_at", "0"),
        ("submitted_at", "1796186922200"),
        ("last_submit_at", "1796186922300"),
        ("txdtm", "2026-12-02 12:48:42"),
        ("respcd", "0000"),
        ("resperr", "成功 \"ok\"\t"),
        ("refund_syssn", "R-77"),
        ("sysdtm", "2026-12-02 12:48:43"),
        ("reason", "settled by enquiry"),
        ("last_error", "timeout after 2 s"),
        ("uncertain", "1"),
        ("operator", "ann"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let e = |at, state: &str, respcd: Option<&str>| TimelineEntry {
        at,
        state: state.into(),
        respcd: respcd.map(Into::into),
        resperr: respcd.map(|_| "处理中".into()),
        refund_syssn: respcd.map(|_| "R-77".into()),
        reason: Some(format!("{state} because")),
        last_error: (state == "pending").then(|| "connection reset".into()),
    };
    ArchivedRefund {
        v: qfrefund_archive::FORMAT,
        shard: 3,
        merchant: "shop-a".into(),
        out_trade_no: otn.into(),
        state: State::Succeeded,
        final_at: 1_796_186_923_966,
        archived_at,
        fields,
        timeline: vec![
            e(1_796_186_922_189, "queued", None),
            e(1_796_186_922_200, "submitting", None),
            e(1_796_186_922_900, "pending", Some("1143")),
            e(1_796_186_923_966, "succeeded", Some("0000")),
        ],
        attempts: vec![
            qfpay::Evidence {
                call: "refund".into(),
                sent_at: 1_796_186_922_201,
                took_ms: 2_000,
                params: [("out_trade_no", otn), ("txamt", "1234"), ("syssn", "20261202000000000000000001")]
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
                sign_sha256: "0cc175b9c0f1b6a831c399e269772661aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".into(),
                sign_type: "MD5".into(),
                http_status: None,
                body: None,
                body_truncated: false,
                error: Some("outcome unknown: timed out".into()),
                fenced_off: true,
            },
            qfpay::Evidence {
                call: "query".into(),
                sent_at: 1_796_186_923_900,
                took_ms: 12,
                params: [("out_trade_no", otn)].into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect(),
                sign_sha256: "92eb5ffee6ae2fec3ad71c777531578faaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".into(),
                sign_type: "MD5".into(),
                http_status: Some(200),
                body: Some("{\"respcd\":\"0000\",\"resperr\":\"成功\"}".into()),
                body_truncated: true,
                error: None,
                fenced_off: false,
            },
        ],
    }
}

#[tokio::test]
async fn every_field_round_trips_and_a_refund_written_again_is_not_duplicated() {
    let pg = PostgresServer::start().unwrap();
    let sink = Sink::from_setting(&pg.url()).unwrap();
    let a = full("RF-1", 1_800_000_000_000);
    assert_eq!(sink.write(3, "ignored", vec![a.clone(), full("RF-2", 1_800_000_000_000)]).await.unwrap().lines, 2);
    assert_eq!(sink.find(3, "", "shop-a", "RF-1").await.unwrap().unwrap(), a);
    assert!(sink.find(3, "", "shop-b", "RF-1").await.unwrap().is_none(), "another merchant's RF-1 is another refund");

    // Written again (a crash before Redis removed it): replaced, never duplicated; an older
    // archiving of it does not overwrite a later one.
    let later = ArchivedRefund { archived_at: 1_800_000_000_500, ..a.clone() };
    assert_eq!(sink.write(3, "", vec![later.clone()]).await.unwrap(), Written { lines: 1, already: 0 });
    assert_eq!(sink.write(3, "", vec![a.clone()]).await.unwrap(), Written { lines: 0, already: 1 });
    assert_eq!(sink.find(3, "", "shop-a", "RF-1").await.unwrap().unwrap(), later);

    // A second process (its own connection) finds the schema migrated and the rows there.
    let other = Sink::from_setting(&pg.url()).unwrap();
    assert_eq!(other.find(3, "", "shop-a", "RF-2").await.unwrap().unwrap().timeline.len(), 4);

    // What finance asks, in SQL.
    let out = std::process::Command::new("psql")
        .args([&pg.url(), "-At", "-c"])
        .arg(
            "SELECT count(*), sum(txamt), min(state), (SELECT count(*) FROM refund_events), \
             (SELECT string_agg(state, ',' ORDER BY seq) FROM refund_events WHERE out_trade_no = 'RF-1'), \
             (SELECT count(*) FROM refund_attempts WHERE http_status = 200) FROM refunds",
        )
        .output();
    if let Ok(out) = out {
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "2|2468|succeeded|8|queued,submitting,pending,succeeded|2"
        );
    }
}

#[test]
fn a_database_url_is_checked_at_once_and_its_password_never_shown() {
    let e = Sink::from_setting("postgres://u:secret@host:notaport/db").unwrap_err().to_string();
    assert!(!e.contains("secret"), "{e}");
    let s = Sink::from_setting("postgres://u:secret@127.0.0.1:5432/db").unwrap();
    assert!(!s.describe().contains("secret") && s.describe().contains("u@127.0.0.1"), "{}", s.describe());
    assert!(!format!("{s:?}").contains("secret"));
}

/// Found in review: the audit table's migration was never applied, a reused out_trade_no (its
/// tombstone long swept) replaced the earlier refund's history, and a NUL byte in an answer made
/// every write of the batch fail for ever.
#[tokio::test]
async fn the_audit_trail_a_reused_out_trade_no_and_a_nul_byte_are_archived() {
    let pg = PostgresServer::start().unwrap();
    let sink = Sink::from_setting(&pg.url()).unwrap();
    let audit = |id: &str| qfrefund_archive::AuditLine {
        v: qfrefund_archive::FORMAT,
        shard: 0,
        id: id.into(),
        fields: [("action", "pause"), ("who", "ann"), ("why", "x\0y"), ("at", "1796186922189"), ("merchant", "m")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
    };
    assert_eq!(sink.write_audit(0, "", vec![audit("1-0"), audit("1-1")]).await.unwrap().lines, 2);
    assert_eq!(sink.write_audit(0, "", vec![audit("1-1")]).await.unwrap(), Written { lines: 0, already: 1 });

    let first = full("RF-9", 1_800_000_000_000);
    let mut again = full("RF-9", 1_900_000_000_000);
    again.fields.insert("created_at".into(), "1890000000000".into());
    again.fields.insert("txamt".into(), "77".into());
    again.attempts[1].body = Some("bad\0byte".into());
    sink.write(3, "", vec![first]).await.unwrap();
    assert_eq!(sink.write(3, "", vec![again]).await.unwrap().lines, 1);
    let found = sink.find(3, "", "shop-a", "RF-9").await.unwrap().unwrap();
    assert_eq!(found.fields["txamt"], "77", "the latest refund under the out_trade_no");
    assert_eq!(found.attempts[1].body.as_deref(), Some("bad\u{fffd}byte"));
    let out = std::process::Command::new("psql")
        .args([pg.url().as_str(), "-At", "-c"])
        .arg("SELECT (SELECT count(*) FROM refunds WHERE out_trade_no = 'RF-9'), (SELECT count(*) FROM refund_audit)")
        .output();
    if let Ok(out) = out {
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "2|2", "both refunds kept, both audit entries");
    }
}
