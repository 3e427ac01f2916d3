-- The evidence of every request sent for a refund: what a dispute needs.
CREATE TABLE refund_attempts (
    merchant        text        NOT NULL,
    out_trade_no    text        NOT NULL,
    created_at      timestamptz NOT NULL,   -- the refund's (see refunds)
    seq             integer     NOT NULL,   -- 0, 1, … in the order they were sent
    call            text        NOT NULL,   -- refund | query
    sent_at         timestamptz NOT NULL,
    took_ms         bigint      NOT NULL,
    params          jsonb       NOT NULL,   -- the form parameters sent (never the key)
    sign_sha256     text        NOT NULL,   -- SHA-256 (hex) of the X-QF-SIGN header sent
    sign_type       text        NOT NULL,
    http_status     integer,
    body            text,                   -- the answer's body, its first 1 KiB
    body_truncated  boolean     NOT NULL,
    error           text,                   -- why there was no usable answer
    PRIMARY KEY (merchant, out_trade_no, created_at, seq),
    FOREIGN KEY (merchant, out_trade_no, created_at) REFERENCES refunds ON DELETE CASCADE
);
