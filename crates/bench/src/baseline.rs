//! Bare apalis-redis 1.0 with a no-op handler: the baseline every qfrefund figure is a ratio to.
//!
//! Staging: every push lands in apalis' scheduled set, and a worker promotes *all* due jobs with
//! one Lua `unpack`, which fails at ≥ 8 000. So the backlog is pushed in chunks of 1 000 and moved
//! from the scheduled set to the ready list in chunks of 1 000 before the worker starts — the only
//! way a bare worker can start at all on 20k or 100k.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use apalis::prelude::{BackendExt, Data, TaskSink, WorkerBuilder, WorkerBuilderExt};
use apalis_redis::{Config, RedisStorage};

const PROMOTE: &str = r#"
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
if #ids > 0 then
  redis.call('RPUSH', KEYS[2], unpack(ids))
  redis.call('ZREM', KEYS[1], unpack(ids))
end
return #ids
"#;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// `Config::default()`, no polling strategy.
    Default,
    /// The apalis-redis configuration qfrefund workers ran with before the ledger became their
    /// backend (kept so the bench's rows stay comparable across runs).
    Qfrefund,
}

/// What qfrefund ran apalis-redis with: big fetches, short heartbeat, no task locking, no events.
fn tuned(queue: &str) -> Config {
    Config::default()
        .queue(queue)
        .batch_size(50)
        .heartbeat_interval(Duration::from_secs(2))
        .missed_heartbeats(3)
        .lock_tasks(false)
        .emit_events(false)
        .persist_results(true)
        .idempotency_ttl(Some(Duration::from_secs(10)))
}

async fn noop(_job: serde_json::Value, done: Data<Arc<AtomicUsize>>) -> Result<(), apalis::prelude::BoxDynError> {
    done.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// Jobs per second a bare worker drains from a backlog of `n`, measured over at most `window`.
pub async fn run(redis_url: &str, flavour: Flavour, n: usize, window: Duration, tag: String) -> anyhow::Result<f64> {
    let con = apalis_redis::connect(redis_url).await?;
    let queue = format!("bench:{{{tag}}}:jobs");
    let config = match flavour {
        Flavour::Default => Config::default().queue(&queue),
        Flavour::Qfrefund => tuned(&queue),
    };
    let mut storage: RedisStorage<serde_json::Value> = RedisStorage::new(con.clone()).with_config(config.clone());
    for chunk in (0..n).collect::<Vec<_>>().chunks(1_000) {
        storage.push_bulk(chunk.iter().map(|i| serde_json::json!({ "otn": format!("B{i}") })).collect()).await?;
    }
    let promote = redis::Script::new(PROMOTE);
    let mut c = con.clone();
    loop {
        let moved: u64 = promote
            .key(config.scheduled_jobs_set())
            .key(config.active_jobs_list())
            .arg(qfpay::time::unix_now() + 5)
            .arg(1_000)
            .invoke_async(&mut c)
            .await?;
        if moved == 0 {
            break;
        }
    }
    let done = Arc::new(AtomicUsize::new(0));
    let name = format!("bench-{tag}-{}", std::process::id());
    let started = Instant::now();
    let stop = done.clone();
    let signal = async move {
        while stop.load(Ordering::Relaxed) < n && started.elapsed() < window {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok::<(), std::io::Error>(())
    };
    let elapsed = match flavour {
        Flavour::Default => {
            let w = WorkerBuilder::new(name.as_str()).backend(storage).data(done.clone()).build(noop);
            w.run_until(signal).await?;
            started.elapsed()
        }
        Flavour::Qfrefund => {
            let w = WorkerBuilder::new(name.as_str())
                .backend(storage.poll_with_interval(Duration::from_millis(50)))
                .concurrency(worker::WorkerConfig::default().concurrency)
                .data(done.clone())
                .build(noop);
            w.run_until(signal).await?;
            started.elapsed()
        }
    };
    Ok(done.load(Ordering::Relaxed) as f64 / elapsed.as_secs_f64())
}

/// Jobs per second bare apalis-redis accepts through `push_bulk` (chunks of 1 000): what an import
/// is measured against.
pub async fn push_bulk(redis_url: &str, n: usize, tag: &str) -> anyhow::Result<f64> {
    let con = apalis_redis::connect(redis_url).await?;
    let queue = format!("bench:{{{tag}}}:jobs");
    let mut storage: RedisStorage<serde_json::Value> =
        RedisStorage::new(con).with_config(Config::default().queue(&queue));
    let started = Instant::now();
    for chunk in (0..n).collect::<Vec<_>>().chunks(1_000) {
        storage.push_bulk(chunk.iter().map(|i| serde_json::json!({ "otn": format!("P{i}") })).collect()).await?;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}
