//! The ledger's money-safety promises against real redis-server processes: each test is named
//! after the promise it keeps.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{answer, claimed, ledger, policy};
use qfrefund_ledger::machine::after_submit;
use qfrefund_ledger::{Claim, ClaimOptions, Ledger, LedgerConfig, NewRefund, Operation, Policy, Record, State};
use redis::AsyncCommands;
use testkit::{RedisServer, unique_namespace};

fn options<'a>(p: &'a Policy, worker: &'a str) -> ClaimOptions<'a> {
    ClaimOptions::new(worker, p, "2025-11-25 10:00:00")
}

async fn claim_as(l: &Ledger, otn: &str, o: &ClaimOptions<'_>) -> Claim {
    let rec = l.get("default", otn).await.unwrap().unwrap();
    l.claim(&(&rec).into(), o).await.unwrap()
}

/// Whether the replica at `url` has finished its first sync with its primary.
async fn replica_in_sync(url: &str) -> bool {
    let mut c = redis::Client::open(url).unwrap().get_multiplexed_async_connection().await.unwrap();
    let info: String = redis::cmd("INFO").arg("replication").query_async(&mut c).await.unwrap();
    info.lines().any(|l| l.trim() == "master_link_status:up")
}

/// A primary and a replica in sync with it.
async fn primary_and_replica() -> (RedisServer, RedisServer) {
    let primary = RedisServer::start().unwrap();
    let replica =
        RedisServer::builder().arg("--replicaof").arg(&format!("127.0.0.1 {}", primary.port())).start().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !replica_in_sync(&replica.url()).await {
        assert!(Instant::now() < deadline, "the replica never connected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (primary, replica)
}

/// A.1 and A.4: an enqueue that finds its refund already recorded writes nothing, so a `WAIT`
/// after it counts from wherever the connection's offset stood — zero on a fresh connection of
/// servers that start it there — and could vouch at once for a record no replica holds (written
/// by an earlier attempt whose wait timed out). The retry is accepted only once a replica holds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_enqueue_is_accepted_only_once_a_replica_holds_the_record() {
    let (primary, replica) = primary_and_replica().await;
    let ns = unique_namespace("dup-durable");
    let config = LedgerConfig {
        namespace: ns.clone(),
        wait_replicas: 1,
        wait_timeout: Duration::from_millis(100),
        ..LedgerConfig::default().with_shards(testkit::test_shards())
    };
    let first = Ledger::connect(&primary.url(), config.clone()).await.unwrap();
    replica.pause(true).unwrap();
    let err = first.enqueue(NewRefund::new("P1", "RF1", 1)).await.unwrap_err();
    assert!(matches!(err, qfrefund_ledger::LedgerError::NotReplicated(1)), "{err}");
    // The producer retries from a fresh process: the record is there, the replica still frozen.
    let retry = Ledger::connect(&primary.url(), config).await.unwrap();
    let err = retry.enqueue(NewRefund::new("P1", "RF1", 1)).await.unwrap_err();
    assert!(matches!(err, qfrefund_ledger::LedgerError::NotReplicated(1)), "a duplicate was vouched for: {err}");
    replica.pause(false).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match retry.enqueue(NewRefund::new("P1", "RF1", 1)).await {
            Ok(e) => {
                assert!(matches!(e, qfrefund_ledger::Enqueued::Duplicate(_)), "{e:?}");
                break;
            }
            Err(e) => assert!(Instant::now() < deadline, "never replicated: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A.1: `WAIT` answers for its connection. Where a new connection's wait counts from zero (the
/// review saw it; Redis 7.0 counts from the offset at connect), a wait after a reconnect vouches for
/// a claim it never saw, and a failover then loses the claim of a refund that was sent. The claim
/// and its wait share one pipeline, so whatever happens to the connection, a claim is only ever
/// called durable by a wait that followed it (and a write of its own) on the same connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_after_a_reconnect_never_vouches_for_a_claim_it_did_not_see() {
    let (primary, replica) = primary_and_replica().await;
    let config = LedgerConfig {
        namespace: unique_namespace("wait-reconnect"),
        wait_replicas: 1,
        wait_timeout: Duration::from_millis(40),
        ..LedgerConfig::default().with_shards(testkit::test_shards())
    };
    let l = Ledger::connect(&primary.url(), config).await.unwrap();
    let n = 30;
    for i in 0..n {
        l.enqueue(NewRefund::new(&format!("P{i}"), &format!("RF{i}"), 1)).await.unwrap();
    }
    // The replica stops acknowledging: nothing written from now on is replicated.
    replica.pause(true).unwrap();

    // Kill the ledger's connections over and over while it claims.
    let killer_url = primary.url();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let killing = stop.clone();
    let killer = tokio::spawn(async move {
        let mut k = redis::Client::open(killer_url).unwrap().get_multiplexed_async_connection().await.unwrap();
        let mut k_round = 0u64;
        while !killing.load(std::sync::atomic::Ordering::Relaxed) {
            // Irregular gaps (5-119 ms), so kills land at every point of a claim's life.
            k_round = k_round.wrapping_mul(31).wrapping_add(17);
            let _: Result<i64, _> = redis::cmd("CLIENT")
                .arg("KILL")
                .arg("TYPE")
                .arg("normal")
                .arg("SKIPME")
                .arg("yes")
                .query_async(&mut k)
                .await;
            tokio::time::sleep(Duration::from_millis(5 + (std::process::id() as u64 + k_round) % 115)).await;
        }
    });
    let p = policy(60_000);
    let o = options(&p, "w1");
    let (mut answered, mut errors) = (0, 0);
    for i in 0..n {
        let otn = format!("RF{i}");
        // A kill may land on any attempt: try again, as a worker would, so that some claims get
        // through however the kills and a slow machine line up. Each answer is checked.
        for attempt in 0..8u64 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(3 * attempt)).await;
            }
            let Ok(Some(rec)) = l.get("default", &otn).await else {
                errors += 1;
                continue;
            };
            match l.claim(&(&rec).into(), &o).await {
                Ok(Claim::Submit { durable, .. } | Claim::Enquire { durable, .. }) => {
                    answered += 1;
                    assert!(!durable, "{otn}: a claim no replica holds was vouched for");
                    break;
                }
                Ok(_) => {
                    answered += 1;
                    break;
                }
                Err(_) => errors += 1,
            }
        }
        // An enqueue no replica holds is never accepted either (A.4): it answers "outcome unknown".
        match l.enqueue(NewRefund::new("PX", &format!("NEW{i}"), 1)).await {
            Ok(e) => panic!("an enqueue no replica holds was accepted: {e:?}"),
            Err(e) => {
                assert!(e.to_string().contains("retry") || matches!(e, qfrefund_ledger::LedgerError::Redis(_)), "{e}")
            }
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    killer.await.unwrap();
    eprintln!("{answered} claims answered, {errors} errors");
    assert!(answered > 0, "no claim got through the killings ({errors} errors): the test proved nothing");
    replica.pause(false).unwrap();
}

/// A.2: a refund found in `submitting` may have been sent. Deferred by the claim (an empty token
/// bucket), deferred or reviewed without a lease (no credentials on this worker), or retried by an
/// operator: it is `uncertain`, so that no later refusal reads as a failure without an enquiry.
#[tokio::test]
async fn a_submitting_refund_that_is_deferred_or_reviewed_stays_uncertain() {
    let (r, l) = ledger("uncertain").await;
    let p = policy(30);
    for otn in ["RF1", "RF2", "RF3"] {
        l.enqueue(NewRefund::new(otn, otn, 1)).await.unwrap();
        assert!(matches!(claim_as(&l, otn, &options(&p, "dead")).await, Claim::Submit { .. }));
    }
    tokio::time::sleep(Duration::from_millis(60)).await;
    // RF1: the claim finds it orphaned, but the merchant's bucket is empty: deferred.
    let empty = ClaimOptions { rate: Some((0.001, 1)), ..options(&p, "w2") };
    l.take_token("default", 0.001, 1).await.unwrap();
    // The claim says why in a type, never in words a caller would have to match.
    assert!(matches!(
        claim_as(&l, "RF1", &empty).await,
        Claim::Deferred { cause: qfrefund_ledger::Deferral::RateLimit, .. }
    ));
    assert!(l.get("default", "RF1").await.unwrap().unwrap().uncertain, "deferred from submitting: may have been sent");
    // RF3: an orphan found by a claim is named as one; its next enquiry is an ordinary one.
    let long = policy(5_000);
    assert!(matches!(claim_as(&l, "RF3", &options(&long, "w2")).await, Claim::Enquire { recovered: true, .. }));
    let mut raw = testkit::raw_connection(&r.url()).await;
    let _: () =
        raw.hset_multiple(l.keys_for("default").record("RF3"), &[("lease_until", 0), ("next_at", 0)]).await.unwrap();
    assert!(matches!(claim_as(&l, "RF3", &options(&long, "w2")).await, Claim::Enquire { recovered: false, .. }));
    // RF2: a worker without credentials puts it off past its maximum age: needs_review.
    let rec = l.get("default", "RF2").await.unwrap().unwrap();
    assert!(!l.defer(&rec, l.now_ms() + 1_000, "no credentials", Duration::ZERO).await.unwrap());
    let rec = l.get("default", "RF2").await.unwrap().unwrap();
    assert_eq!(rec.state, State::NeedsReview);
    assert!(rec.uncertain, "reviewed from submitting: may have been sent");
    // The operator's retry enquires it; a refusal then is not a failure.
    assert_eq!(l.operate("default", "RF2", Operation::Retry, "ann", "checked").await.unwrap(), Ok(State::Pending));
    let (_, rec) = claimed(claim_as(&l, "RF2", &options(&policy(5_000), "w3")).await);
    assert!(rec.uncertain);
    let resent = Record { state: State::Submitting, ..rec };
    assert_eq!(after_submit(&resent, &answer("1272"), &p, l.now_ms(), 0.5).state, State::Pending);
}

/// A.6: learning a payment's amount is waiting too; it ends at the maximum age like any wait.
#[tokio::test]
async fn a_refund_waiting_to_learn_its_payment_amount_reaches_max_age() {
    let (_r, l) = ledger("need-paid").await;
    l.enqueue(NewRefund::new("P1", "RF1", 1)).await.unwrap();
    let p = Policy { max_age: Duration::from_millis(20), ..policy(5_000) };
    let o = ClaimOptions { want_paid: true, ..options(&p, "w") };
    assert_eq!(claim_as(&l, "RF1", &o).await, Claim::NeedPaid);
    tokio::time::sleep(Duration::from_millis(40)).await;
    assert!(matches!(claim_as(&l, "RF1", &o).await, Claim::Blocked(why) if why.contains("payment amount")));
    assert_eq!(l.get("default", "RF1").await.unwrap().unwrap().state, State::NeedsReview);
}

/// A.8: "resolve --state succeeded" is a claim about money: refused for a refund never sent, and
/// for one that would take its payment past what was paid, unless forced (audited as forced).
#[tokio::test]
async fn resolving_a_success_is_refused_when_never_sent_or_past_the_paid_amount() {
    let (_r, l) = ledger("resolve").await;
    let p = policy(5_000);
    // Never sent: reviewed straight from queued.
    l.enqueue(NewRefund::new("P0", "RF0", 1)).await.unwrap();
    let rec = l.get("default", "RF0").await.unwrap().unwrap();
    l.defer(&rec, 0, "waited too long", Duration::ZERO).await.unwrap();
    let refused =
        l.operate("default", "RF0", Operation::Resolve(State::Succeeded), "ann", "QFPay says ok").await.unwrap();
    assert!(refused.unwrap_err().to_string().contains("never sent"));
    let forced = l.operate("default", "RF0", Operation::ForceResolve(State::Succeeded), "ann", "sure").await.unwrap();
    assert!(forced.unwrap_err().to_string().contains("never sent"), "force never covers a refund never sent");
    assert_eq!(
        l.operate("default", "RF0", Operation::Resolve(State::Failed), "ann", "never sent").await.unwrap(),
        Ok(State::Failed)
    );

    // Paid unknown when both were sent; learned 1 000 afterwards.
    for otn in ["RF1", "RF2"] {
        l.enqueue(NewRefund::new("P1", otn, 600)).await.unwrap();
    }
    let (fence, r1) = claimed(claim_as(&l, "RF1", &options(&p, "w")).await);
    assert!(
        l.transition(&r1, State::Submitting, fence, &after_submit(&r1, &answer("0000"), &p, 0, 0.5), "a")
            .await
            .unwrap()
    );
    let (fence, r2) = claimed(claim_as(&l, "RF2", &options(&p, "w")).await);
    let review = after_submit(&r2, &answer("1108"), &p, 0, 0.5);
    assert!(l.transition(&r2, State::Submitting, fence, &review, "b").await.unwrap());
    assert_eq!(l.set_paid(&(&r2).into(), 1_000).await.unwrap(), 1_000);
    let refused =
        l.operate("default", "RF2", Operation::Resolve(State::Succeeded), "ann", "QFPay says ok").await.unwrap();
    assert!(refused.unwrap_err().to_string().contains("1200 of 1000"));
    assert_eq!(l.get("default", "RF2").await.unwrap().unwrap().state, State::NeedsReview);
    let forced =
        l.operate("default", "RF2", Operation::ForceResolve(State::Succeeded), "ann", "QFPay ticket 42").await.unwrap();
    assert_eq!(forced, Ok(State::Succeeded));
    let audit = l.audit("0", 100).await.unwrap();
    assert!(audit.iter().any(|a| a.out_trade_no == "RF2" && a.action == "resolve --force" && a.outcome == "ok"));
    assert!(audit.iter().any(|a| a.out_trade_no == "RF2" && a.action == "resolve" && a.outcome.starts_with("refused")));
}

/// A.9: fences grow with the server's clock; after a failover to a node whose clock is behind, a
/// rolled-back record could hand the same fence to a second worker. The lease owner tells the two
/// apart: the stale holder writes nothing.
#[tokio::test]
async fn a_stale_holder_with_an_equal_fence_cannot_write() {
    let (r, l) = ledger("owner").await;
    let p = policy(5_000);
    l.enqueue(NewRefund::new("P1", "RF1", 1)).await.unwrap();
    let (fence, first) = claimed(claim_as(&l, "RF1", &options(&p, "w1")).await);
    // As if a rollback and a second claim on a slower clock gave w2 the very same fence.
    let mut raw = testkit::raw_connection(&r.url()).await;
    let _: () = raw.hset(l.keys_for("default").record("RF1"), "lease_owner", "w2").await.unwrap();
    let d = after_submit(&first, &answer("0000"), &p, 0, 0.5);
    assert!(!l.transition(&first, State::Submitting, fence, &d, "op").await.unwrap(), "w1 no longer holds it");
    assert_eq!(l.get("default", "RF1").await.unwrap().unwrap().state, State::Submitting);
}

/// The state machine's moves are written once (`State::EDGES`); the store's transition refuses any
/// other, so no decision can put a refund that may have been sent back to `queued`.
#[tokio::test]
async fn the_store_refuses_a_move_the_state_machine_does_not_allow() {
    let (_r, l) = ledger("edges").await;
    let p = policy(5_000);
    l.enqueue(NewRefund::new("P1", "RF1", 1)).await.unwrap();
    let (fence, rec) = claimed(claim_as(&l, "RF1", &options(&p, "w")).await);
    let back = qfrefund_ledger::Decision {
        state: State::Queued,
        next_at: Some(0),
        reason: "as if never sent".into(),
        pause_merchant: false,
        set: Vec::new(),
    };
    let err = l.transition(&rec, State::Submitting, fence, &back, "op").await.unwrap_err();
    assert!(err.to_string().contains("submitting -> queued"), "{err}");
    assert_eq!(l.get("default", "RF1").await.unwrap().unwrap().state, State::Submitting, "nothing was written");
    let ok = after_submit(&rec, &answer("0000"), &p, 0, 0.5);
    assert!(l.transition(&rec, State::Submitting, fence, &ok, "op2").await.unwrap());
}
