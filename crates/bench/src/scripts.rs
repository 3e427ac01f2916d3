//! Where the Redis budget goes, script by script: each lifecycle script run on its own over a
//! fresh Redis (AOF everysec), its calls sharing round trips as a worker's do, and Redis' own
//! counters read before and after. Commands include those a script runs inside.

use std::time::Duration;

use ledger::machine::{SubmitResult, after_submit};
use ledger::{Claim, ClaimOptions, Ledger, LedgerConfig, Policy, State};
use testkit::RedisServer;

use crate::{RedisWork, redis_work};

/// One row per script: (what, µs / commands / round trips per call, and per refund).
pub async fn per_script(n: usize) -> anyhow::Result<Vec<(String, String)>> {
    let redis = RedisServer::start_with_aof()?;
    let url = redis.url();
    let l =
        Ledger::connect(&url, LedgerConfig { namespace: "bench-scripts".into(), ..LedgerConfig::default() }).await?;
    let mut rows = Vec::new();
    let show = |w: RedisWork, calls: usize, per_call: usize| {
        let c = w.per(calls);
        format!(
            "{:.1} µs / {:.1} commands / {:.2} reads per call ({per_call} refund(s) per call: {:.1} µs per refund)",
            c.cpu_us,
            c.commands,
            c.reads,
            c.cpu_us / per_call as f64
        )
    };

    // enqueue_many: the producer's batch (100 refunds per call).
    let before = redis_work(&url).await?;
    for chunk in crate::e2e::refunds("SCR", n).chunks(100) {
        for r in l.enqueue_batch(chunk.to_vec()).await {
            r?;
        }
    }
    rows.push((
        "6. per script: enqueue_many, 100 refunds per call".into(),
        show(redis_work(&url).await? - before, n / 100, 100),
    ));

    // claim_due: K = 32 due refunds claimed per call, as an idle-free worker fetches.
    let policy = Policy { lease: Duration::from_secs(60), ..Policy::default() };
    let options = ClaimOptions {
        want_paid: true,
        rate: Some((1e6, 1_000_000)),
        served: "default",
        ..ClaimOptions::new("bench", &policy, "2026-01-01 00:00:00")
    };
    let before = redis_work(&url).await?;
    let mut claimed = Vec::with_capacity(n);
    let mut calls = 0;
    while claimed.len() < n {
        let fetched = l.claim_due(0, 32, &options).await?;
        calls += 1;
        anyhow::ensure!(!fetched.claims.is_empty(), "claim_due found nothing due");
        for c in fetched.claims {
            if let Claim::Submit { fence, record, .. } = c.claim {
                claimed.push((fence, record));
            }
        }
    }
    rows.push((
        "6. per script: claim_due, 32 refunds per call".into(),
        show(redis_work(&url).await? - before, calls, 32),
    ));

    // transition: submitting → succeeded, 64 at a time in flight (they share round trips).
    let success = SubmitResult::Answer(qfpay::RefundResponse {
        respcd: Some("0000".into()),
        syssn: Some("R1".into()),
        ..Default::default()
    });
    let before = redis_work(&url).await?;
    for chunk in claimed.chunks(64) {
        let steps = chunk.iter().enumerate().map(|(i, (fence, rec))| {
            let d = after_submit(rec, &success, &policy, l.now_ms(), 0.5);
            let (l, rec, fence) = (l.clone(), rec.clone(), *fence);
            async move {
                anyhow::ensure!(d.state == State::Succeeded, "not a success: {:?}", d.state);
                let op = format!("bench:{fence}:{i}");
                anyhow::ensure!(l.transition(&rec, State::Submitting, fence, &d, &op).await?, "fenced");
                Ok(())
            }
        });
        let handles: Vec<_> = steps.map(tokio::spawn).collect();
        for h in handles {
            h.await??;
        }
    }
    rows.push((
        "6. per script: transition, submitting → succeeded".into(),
        show(redis_work(&url).await? - before, n, 1),
    ));
    Ok(rows)
}
