-- qfrefund's archive in PostgreSQL: one row per refund archived from Redis, one per transition.
-- Applied by the workers (and `qfrefund` commands that read the archive) at their first use of
-- the database, once, in order; table qfrefund_migrations says which have been applied.

CREATE TABLE refunds (
    merchant      text        NOT NULL,
    out_trade_no  text        NOT NULL,
    shard         integer     NOT NULL,
    state         text        NOT NULL,   -- succeeded | failed | cancelled
    syssn         text        NOT NULL,   -- the payment refunded
    txamt         bigint      NOT NULL,   -- minor units
    orig_txamt    bigint,
    refund_syssn  text,                   -- QFPay's id of the refund
    respcd        text,
    resperr       text,
    reason        text,
    submits       integer     NOT NULL,
    enquiries     integer     NOT NULL,
    created_at    timestamptz NOT NULL,
    final_at      timestamptz NOT NULL,   -- when it entered its final state
    archived_at   timestamptz NOT NULL,
    fields        jsonb       NOT NULL,   -- every field of the record as Redis held it
    -- created_at too: once a refund's tombstone is swept (idempotency_retention), its
    -- out_trade_no may be used again, by another refund with a history of its own.
    PRIMARY KEY (merchant, out_trade_no, created_at)
);
CREATE INDEX refunds_syssn ON refunds (syssn);
CREATE INDEX refunds_final_at ON refunds (final_at);

CREATE TABLE refund_events (
    merchant      text        NOT NULL,
    out_trade_no  text        NOT NULL,
    created_at    timestamptz NOT NULL,   -- the refund's (see refunds)
    seq           integer     NOT NULL,   -- 0, 1, … in the order they happened
    at            timestamptz NOT NULL,
    state         text        NOT NULL,
    respcd        text,
    resperr       text,
    refund_syssn  text,
    reason        text,
    last_error    text,
    PRIMARY KEY (merchant, out_trade_no, created_at, seq),
    FOREIGN KEY (merchant, out_trade_no, created_at) REFERENCES refunds ON DELETE CASCADE
);
