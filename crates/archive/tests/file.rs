//! The file sink: what it writes verifies against its manifest, and a crash at any step of a
//! write leaves each refund archived once or not at all (then still in Redis).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::Write;

use ledger::State;
use qfrefund_archive::{ArchivedRefund, Sink, Written};

fn refund(otn: &str, updated_at: i64) -> ArchivedRefund {
    let fields: BTreeMap<String, String> = [("out_trade_no", otn), ("txamt", "100"), ("merchant", "shop")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .chain([("updated_at".to_owned(), updated_at.to_string())])
        .collect();
    ArchivedRefund {
        v: qfrefund_archive::FORMAT,
        shard: 0,
        merchant: "shop".into(),
        out_trade_no: otn.into(),
        state: State::Succeeded,
        final_at: updated_at,
        archived_at: updated_at + 1,
        fields,
        timeline: Vec::new(),
        attempts: Vec::new(),
    }
}

fn sink(dir: &std::path::Path) -> (Sink, qfrefund_archive::file::FileSink) {
    let s = Sink::from_setting(&format!("file://{}", dir.display())).unwrap();
    (s, qfrefund_archive::file::FileSink::new(dir.to_owned()))
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("qfrefund-archive-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[tokio::test]
async fn lines_round_trip_and_the_manifest_verifies() {
    let dir = tempdir("round");
    let (s, f) = sink(&dir);
    let day = "2026-12-02";
    assert_eq!(s.write(0, day, vec![refund("A", 1), refund("B", 2)]).await.unwrap(), Written { lines: 2, already: 0 });
    assert_eq!(s.write(0, day, vec![refund("C", 3)]).await.unwrap(), Written { lines: 1, already: 0 });
    let v = f.verify().unwrap();
    assert_eq!((v.len(), v[0].lines, v[0].unfinished), (1, 3, 0));
    let found = s.find(0, day, "shop", "B").await.unwrap().unwrap();
    assert_eq!(found, refund("B", 2));
    // The day after (archived before midnight, removed after): still found.
    assert!(s.find(0, "2026-12-03", "shop", "C").await.unwrap().is_some());
    assert!(s.find(0, day, "shop", "Z").await.unwrap().is_none());
    assert!(s.find(0, day, "other", "A").await.unwrap().is_none(), "another merchant's A is another refund");
    // One byte changed: verify says so.
    let path = dir.join("shard-0").join("2026-12-02.jsonl.zst");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[10] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    assert!(matches!(f.verify(), Err(qfrefund_archive::ArchiveError::Corrupt { .. })));
}

#[tokio::test]
async fn a_write_cut_short_by_a_crash_is_dropped_and_written_again_once() {
    let dir = tempdir("torn");
    let (s, f) = sink(&dir);
    let day = "2026-12-02";
    s.write(0, day, vec![refund("A", 1)]).await.unwrap();
    // A crash after part of the next frame reached the disk, before the manifest: B and C are
    // still in Redis and come again.
    let path = dir.join("shard-0").join("2026-12-02.jsonl.zst");
    std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"\x28\xb5\x2f\xfd torn").unwrap();
    assert_eq!(f.verify().unwrap()[0].unfinished, 9);
    assert_eq!(s.write(0, day, vec![refund("B", 2), refund("C", 3)]).await.unwrap().lines, 2);
    let v = f.verify().unwrap();
    assert_eq!((v[0].lines, v[0].unfinished), (3, 0));
}

#[tokio::test]
async fn a_crash_after_the_manifest_before_redis_removed_them_writes_nothing_twice() {
    let dir = tempdir("again");
    let (s, f) = sink(&dir);
    s.write(0, "2026-12-02", vec![refund("A", 1), refund("B", 2)]).await.unwrap();
    // Redis still holds A and B (the removal never ran); the next round reads them with D, even
    // on the next day.
    let again = s.write(0, "2026-12-03", vec![refund("A", 1), refund("B", 2), refund("D", 4)]).await.unwrap();
    assert_eq!(again, Written { lines: 1, already: 2 });
    // B retried by an operator after it was archived, final again: a new version, archived again.
    assert_eq!(s.write(0, "2026-12-03", vec![refund("B", 9)]).await.unwrap().lines, 1);
    let total: u64 = f.verify().unwrap().iter().map(|v| v.lines).sum();
    assert_eq!(total, 4);
    assert_eq!(s.find(0, "2026-12-03", "shop", "B").await.unwrap().unwrap().fields["updated_at"], "9");
}

#[test]
fn settings_name_an_absolute_file_path() {
    assert!(Sink::from_setting("file:///var/lib/qfrefund/archive").is_ok());
    assert!(Sink::from_setting("/var/lib/qfrefund/archive").is_ok());
    assert!(Sink::from_setting("file://relative").is_err());
    let e = Sink::from_setting("s3://bucket").unwrap_err().to_string();
    assert!(e.contains("s3"), "{e}");
}

/// Two writers of one shard at once (a worker stalled past its archiving lease, and the one
/// that took over): the lock on the shard's directory serialises them; every line a write
/// acknowledged is there, and the manifest verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_of_one_shard_never_corrupt_it() {
    let dir = tempdir("race");
    let setting = format!("file://{}", dir.display());
    let a = std::sync::Arc::new(Sink::from_setting(&setting).unwrap());
    let b = std::sync::Arc::new(Sink::from_setting(&setting).unwrap());
    let mut acked = 0;
    for round in 0..50 {
        let ba: Vec<_> = (0..20).map(|i| refund(&format!("A{round}-{i}"), 1)).collect();
        let bb: Vec<_> = (0..20).map(|i| refund(&format!("B{round}-{i}"), 1)).collect();
        let (a2, b2) = (a.clone(), b.clone());
        let ta = tokio::spawn(async move { a2.write(0, "2026-12-01", ba).await });
        let tb = tokio::spawn(async move { b2.write(0, "2026-12-01", bb).await });
        for r in [ta.await.unwrap(), tb.await.unwrap()] {
            acked += r.unwrap().lines;
        }
    }
    let lines: u64 = qfrefund_archive::file::FileSink::new(dir).verify().unwrap().iter().map(|v| v.lines).sum();
    assert_eq!((lines, acked), (2_000, 2_000));
}
