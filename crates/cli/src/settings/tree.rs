//! The settings, declared once each. Defaults are the libraries' own (`WorkerConfig`,
//! `LedgerConfig`, `ApiConfig`, `Retention`), read here rather than written again.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::section;
use super::values::{OnOff, Secret, Tokens};

fn worker() -> worker::WorkerConfig {
    worker::WorkerConfig::default()
}

fn ledger() -> ledger::LedgerConfig {
    ledger::LedgerConfig::default()
}

fn api() -> api::ApiConfig {
    api::ApiConfig::default()
}

fn retention() -> worker::retention::Retention {
    worker::retention::Retention::default()
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

section! {
    /// The top of the file: the ledger and its Redis.
    Settings at "" {
        /// The ledger's Redis: `redis://`, `rediss://` (TLS), `redis+sentinel://[:pw@]h1:26379,h2:26379/service[/db]` (follows the primary), or a Redis Cluster, `redis+cluster://[:pw@]h1:p1,h2:p2,…` (`rediss+cluster://` for TLS; follows `MOVED`/`ASK`).
        redis_url: String = ledger::DEFAULT_REDIS_URL.into() => "QFREFUND_REDIS_URL", Url;
        /// PEM file of the CA that signed the Redis server's certificate (`rediss://` with a private CA).
        redis_ca_file: Option<PathBuf> = ledger().tls_ca_file => "QFREFUND_REDIS_CA_FILE", Text;
        /// Key prefix: `<namespace>:{<tag>}:` with one shard, `<namespace>:{<tag>-<i>}:` for shard `i` of several.
        namespace: String = ledger().namespace => "QFREFUND_NAMESPACE", Text;
        /// The ledger's hash tag (see `namespace`).
        queue_tag: String = ledger().tag => "QFREFUND_QUEUE_TAG", Text;
        /// Shards of the ledger, each its own hash tag; fixed for a ledger's life: a process configured otherwise refuses to start (Redis Cluster: 8-16).
        shards: usize = 1 => "QFREFUND_SHARDS", Whole;
        /// Merchants placed on a shard by hand, `name=shard,…` (`[merchant_shards]` in the file); every other merchant's shard is FNV-1a(name) mod `shards`.
        merchant_shards: BTreeMap<String, usize> = BTreeMap::new() => "QFREFUND_MERCHANT_SHARDS", Pins;
        /// Refuse a Redis without AOF (`off` for throwaway setups only); an evicting `maxmemory-policy` is always refused, by workers, `serve`, the producer commands and the library's `Ledger::connect_producer` alike.
        require_aof: OnOff = OnOff(worker().require_aof) => "QFREFUND_REQUIRE_AOF", Switch;
        /// Replicas that must hold an enqueue (else "not replicated, retry") and a claim before its refund is sent; 1 with Sentinel and two replicas. Above the replicas connected to the primary: refused at start-up; 0 with a `redis+sentinel://` URL: a WARN.
        redis_wait_replicas: usize = ledger().wait_replicas => "QFREFUND_REDIS_WAIT_REPLICAS", Whole;
        /// How long `redis_wait_replicas` (and an AOF fsync) may take to confirm a write (1 ms to a minute); past it an enqueue answers "not replicated, retry" and a claim is not sent (its lease runs out and it is tried again).
        redis_wait_timeout_ms: u64 = ms(ledger().wait_timeout) => "QFREFUND_REDIS_WAIT_TIMEOUT_MS", Whole;
        /// A Redis command not answered in this long fails and its connection is re-established (at least 1500, and `redis_wait_timeout_ms` + 500); a write's outcome is then unknown (read back, or retried idempotently).
        redis_response_timeout_ms: u64 = ms(ledger().response_timeout) => "QFREFUND_REDIS_RESPONSE_TIMEOUT_MS", Whole;
        /// The outcome stream's approximate cap, in entries (at least 100000): past it the oldest entries go whether or not a webhook delivered them; `events_retention_s` trims by age first.
        events_maxlen: u64 = ledger().events_maxlen => "QFREFUND_EVENTS_MAXLEN", Whole;
    }
    nested {
        /// The workers (`[worker]`).
        worker: WorkerSettings,
        /// The HTTP API (`[api]`).
        api: ApiSettings,
        /// One section per merchant (`[merchants.NAME]`); refunds choose one with `merchant`.
        merchants: BTreeMap<String, MerchantSettings>,
    }
}

section! {
    /// `[worker]`: how workers process refunds.
    WorkerSettings at "worker" {
        /// Refunds in flight per worker process.
        concurrency: usize = worker().concurrency => "QFREFUND_CONCURRENCY", Whole;
        /// The whole QFPay exchange; past it the outcome is unknown, so an enquiry follows (the same default for workers, `reconcile` and `qfrefund qfpay`).
        http_timeout_ms: u64 = ms(worker().http.timeout) => "QFREFUND_HTTP_TIMEOUT_MS", Whole;
        /// Connecting to QFPay; a failure inside it is provably "not sent" (the same default everywhere).
        http_connect_timeout_ms: u64 = ms(worker().http.connect_timeout) => "QFREFUND_HTTP_CONNECT_TIMEOUT_MS", Whole;
        /// The first enquiry after a processing code or an unknown outcome.
        enquiry_first_ms: u64 = ms(worker().policy.enquiry_first) => "QFREFUND_ENQUIRY_FIRST_MS", Whole;
        /// Later enquiries: base·2^k, capped, full jitter.
        backoff_base_ms: u64 = ms(worker().policy.enquiry_base) => "QFREFUND_BACKOFF_BASE_MS", Whole;
        /// The cap of the enquiry backoff.
        backoff_cap_ms: u64 = ms(worker().policy.enquiry_cap) => "QFREFUND_BACKOFF_CAP_MS", Whole;
        /// Resends after retryable codes: base·2^k, capped.
        resubmit_base_ms: u64 = ms(worker().policy.resubmit_base) => "QFREFUND_RESUBMIT_BASE_MS", Whole;
        /// The cap of the resend backoff.
        resubmit_cap_ms: u64 = ms(worker().policy.resubmit_cap) => "QFREFUND_RESUBMIT_CAP_MS", Whole;
        /// Resends after retryable codes before `needs_review`.
        resubmit_budget: u32 = worker().policy.resubmit_budget => "QFREFUND_RESUBMIT_BUDGET", Whole;
        /// Caps a code's own advised wait (`1269`: 6 h, `1124`: a day): for staging and tests.
        code_delay_cap_ms: Option<u64> = worker().policy.code_delay_cap.map(ms) => "QFREFUND_CODE_DELAY_CAP_MS", Whole;
        /// "Not found" `not_found_min` times over at least this long before a resend (at least the lease).
        not_found_grace_ms: u64 = ms(worker().policy.not_found_grace) => "QFREFUND_NOT_FOUND_GRACE_MS", Whole;
        /// Enquiries answering "not found" before a resend (at least 2; QFPay's records can lag).
        not_found_min: u32 = worker().policy.not_found_min => "QFREFUND_NOT_FOUND_MIN", Whole;
        /// A refund whose payment has another refund in flight waits this long before it is looked at again (10 ms to an hour).
        syssn_busy_wait_ms: u64 = ms(worker().policy.syssn_busy_wait) => "QFREFUND_SYSSN_BUSY_WAIT_MS", Whole;
        /// A paused merchant's refund waits this long before it is looked at again (100 ms to an hour).
        paused_wait_ms: u64 = ms(worker().policy.paused_wait) => "QFREFUND_PAUSED_WAIT_MS", Whole;
        /// A refund not final this long after it was created goes to `needs_review`.
        max_age_s: u64 = worker().policy.max_age.as_secs() => "QFREFUND_MAX_AGE_S", Whole;
        /// A claim's lease; must exceed the HTTP timeout by 500 ms.
        lease_ms: u64 = ms(worker().policy.lease) => "QFREFUND_LEASE_MS", Whole;
        /// The quiet window: QFPay refuses refunds 23:30–00:30 UTC+8, so workers submit none 23:25–00:35 UTC+8 (five minutes' margin each side; enquiries go on).
        quiet_window: OnOff = OnOff(worker().quiet_window) => "QFREFUND_QUIET_WINDOW", Switch;
        /// Per-merchant token bucket shared by all workers, refunds per second (QFPay: 100/s, 400/min per merchant, shared with payments).
        rate_per_sec: f64 = worker().rate_per_sec => "QFREFUND_RATE_PER_SEC", Number;
        /// The token bucket's burst.
        rate_burst: u32 = worker().rate_burst => "QFREFUND_RATE_BURST", Whole;
        /// The longest idle wait (wake-ups and due times end it sooner).
        idle_wait_ms: u64 = ms(worker().idle_wait) => "QFREFUND_IDLE_WAIT_MS", Whole;
        /// Refunds a worker claims per fetch (one script call; at most its free concurrency).
        fetch_batch: usize = worker().fetch_batch => "QFREFUND_FETCH_BATCH", Whole;
        /// How often a worker announces itself and the merchants it serves.
        heartbeat_ms: u64 = ms(worker().heartbeat) => "QFREFUND_HEARTBEAT_MS", Whole;
        /// After SIGTERM: how long in-flight refunds may take to finish.
        drain_grace_ms: u64 = ms(worker().drain_grace) => "QFREFUND_DRAIN_GRACE_MS", Whole;
        /// Learn a payment's paid amount from QFPay's answers, for the over-refund guard.
        learn_paid: OnOff = OnOff(worker().learn_paid) => "QFREFUND_LEARN_PAID", Switch;
        /// The name leases and heartbeats carry.
        name: String = worker().worker_name => "QFREFUND_WORKER_NAME", Text;
        /// Serve `/metrics` and `/healthz` here (e.g. `0.0.0.0:9464`).
        metrics_listen: Option<String> = worker().metrics_listen => "QFREFUND_METRICS_LISTEN", Text;
        /// Only these shards, `0,2,…` (unset: every shard).
        serve_shards: Option<Vec<usize>> = worker().serve_shards => "QFREFUND_SERVE_SHARDS", WholeList;
        /// Idle QFPay connections kept per host, for reuse.
        http_pool_max_idle: usize = worker().http.pool_max_idle_per_host => "QFREFUND_HTTP_POOL_MAX_IDLE", Whole;
        /// One webhook delivery attempt; past it the attempt failed and is retried.
        webhook_timeout_ms: u64 = ms(worker().webhooks.timeout) => "QFREFUND_WEBHOOK_TIMEOUT_MS", Whole;
        /// Webhook retries: base·2^k, capped.
        webhook_retry_base_ms: u64 = ms(worker().webhooks.retry_base) => "QFREFUND_WEBHOOK_RETRY_BASE_MS", Whole;
        /// The cap of the webhook retry backoff.
        webhook_retry_cap_ms: u64 = ms(worker().webhooks.retry_cap) => "QFREFUND_WEBHOOK_RETRY_CAP_MS", Whole;
        /// Attempts before a delivery is given up (visible in `stats` and `list --webhook-failed`; `redeliver` puts it back).
        webhook_max_attempts: u32 = worker().webhooks.max_attempts => "QFREFUND_WEBHOOK_MAX_ATTEMPTS", Whole;
        /// A delivery taken by a worker that then vanished is taken over after this long (more than `webhook_timeout_ms`).
        webhook_claim_idle_ms: u64 = ms(worker().webhooks.claim_idle) => "QFREFUND_WEBHOOK_CLAIM_IDLE_MS", Whole;
        /// Outcome-stream entries older than this are trimmed, never one a consumer group has not read and acknowledged.
        events_retention_s: u64 = worker().events_retention.as_secs() => "QFREFUND_EVENTS_RETENTION_S", Whole;
        /// Where final refunds are archived before they leave Redis: `file:///path` (daily zstd JSON Lines files per shard, with manifests) or `postgres://user:password@host:port/db` (tables `refunds`, `refund_events`, `refund_audit`); `status` and the API read archived refunds back from it. Unset: nothing is ever removed (a WARN at start), and Redis fills up.
        archive: Option<String> = retention().archive => "QFREFUND_ARCHIVE", Url;
        /// Final refunds whose final state is older than this are archived, then removed; `needs_review` and live refunds never are.
        retention_s: u64 = retention().retention.as_secs() => "QFREFUND_RETENTION_S", Whole;
        /// How long a removed refund's tombstone answers for it (at least the retention; keep it above QFPay's longest refund window, 365 days).
        idempotency_retention_s: u64 = retention().idempotency_retention.as_secs() => "QFREFUND_IDEMPOTENCY_RETENTION_S", Whole;
        /// Audit-trail entries older than this are archived, then trimmed.
        audit_retention_s: u64 = retention().audit_retention.as_secs() => "QFREFUND_AUDIT_RETENTION_S", Whole;
        /// Final refunds older than this are archived early, a summary and their tombstones kept in Redis (0: never; no effect at or above the retention).
        summary_after_s: u64 = retention().summary_after.map_or(0, |d| d.as_secs()) => "QFREFUND_SUMMARY_AFTER_S", Whole;
    }
}

section! {
    /// `[api]`: the HTTP API (`qfrefund serve`).
    ApiSettings at "api" {
        /// The API's address.
        listen: String = "127.0.0.1:8080".into() => "QFREFUND_API_LISTEN", Text;
        /// Serve `/metrics` on this address instead of the API's own (e.g. `0.0.0.0:9465`): the API's port then answers 404 there.
        metrics_listen: Option<String> = None => "QFREFUND_API_METRICS_LISTEN", Text;
        /// The largest request body accepted.
        body_limit_bytes: usize = api().body_limit => "QFREFUND_API_BODY_LIMIT_BYTES" | "QFREFUND_API_BODY_LIMIT", Whole;
        /// The longest a request may take before it is answered `408`.
        request_timeout_ms: u64 = ms(api().request_timeout) => "QFREFUND_API_REQUEST_TIMEOUT_MS" | "QFREFUND_API_TIMEOUT_MS", Whole;
        /// The public base of each refund's `url` (unset: relative URLs).
        base_url: Option<String> = None => "QFREFUND_API_BASE_URL", Text;
        /// The most (minor units, summed) one operator may retry or cancel in one `POST /v1/bulk` alone (0: no limit).
        bulk_max_txamt: u64 = api().bulk_max_txamt.unwrap_or(0) => "QFREFUND_API_BULK_MAX_TXAMT", Whole;
        /// Resolving a refund as succeeded over HTTP, and a bulk action above `bulk_max_txamt`, need a second operator's approval; each operator needs a token of their own. The CLI's `resolve`, which speaks to Redis directly, is for administrators and is not subject to it.
        four_eyes: OnOff = OnOff(api().four_eyes) => "QFREFUND_API_FOUR_EYES", Switch;
        /// Comma-separated IP addresses of a trusted authenticating proxy in front of the console.
        console_proxy_from: Option<String> = None => "QFREFUND_API_CONSOLE_PROXY_FROM" | "QFREFUND_CONSOLE_PROXY_FROM", Text;
        /// The people (as the proxy names them) who may act in the console; everyone else it names reads only.
        console_operators: Option<String> = None => "QFREFUND_API_CONSOLE_OPERATORS" | "QFREFUND_CONSOLE_OPERATORS", Text;
        /// The API's tokens, `name:role:token,…` (roles `read` < `produce` < `operate`), or in the file `[[api.tokens]]` tables of `name`, `role` and `token_env` (the variable holding the token). The environment's list replaces the file's.
        tokens: Tokens = Tokens::None => "QFREFUND_API_TOKENS", Secret;
    }
}

section! {
    /// `[merchants.NAME]`: one QFPay merchant account. The default merchant's fields are also
    /// read from the environment.
    MerchantSettings at "merchants.default" {
        /// The app code QFPay issued.
        app_code: Option<String> = None => "QFPAY_APP_CODE", Text;
        /// The client key itself (keep the file private), or…
        client_key: Option<Secret> = None => "QFPAY_CLIENT_KEY", Secret;
        /// …the name of an environment variable holding it.
        client_key_env: Option<String> = None => "", Text;
        /// Agents' sub-merchant id (agents only).
        mchid: Option<String> = None => "QFPAY_MCHID", Text;
        /// QFPay's endpoint, e.g. `https://openapi-hk.qfapi.com`.
        base_url: Option<String> = None => "QFPAY_BASE_URL", Text;
        /// The signature: `MD5` or `SHA256`.
        sign_alg: Option<String> = None => "QFPAY_SIGN_ALG", Text;
        /// Final outcomes are POSTed here, signed (Standard Webhooks).
        webhook_url: Option<String> = None => "QFREFUND_WEBHOOK_URL", Text;
        /// The webhook's signing secret, or…
        webhook_secret: Option<Secret> = None => "QFREFUND_WEBHOOK_SECRET", Secret;
        /// …the name of an environment variable holding it.
        webhook_secret_env: Option<String> = None => "", Text;
    }
}
