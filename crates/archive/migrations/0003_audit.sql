-- The audit trail: every operator action (and every merchant paused), archived from each shard's
-- audit stream before it is trimmed after audit_retention.
CREATE TABLE refund_audit (
    shard         integer     NOT NULL,
    stream_id     text        NOT NULL,   -- the entry's id in its shard's stream
    at            timestamptz NOT NULL,
    merchant      text        NOT NULL,
    out_trade_no  text        NOT NULL,   -- empty for a merchant's pause or resume
    action        text        NOT NULL,
    who           text        NOT NULL,
    why           text        NOT NULL,
    outcome       text        NOT NULL,   -- ok, or refused: why
    fields        jsonb       NOT NULL,   -- the whole entry
    PRIMARY KEY (shard, stream_id)
);
CREATE INDEX refund_audit_refund ON refund_audit (merchant, out_trade_no);
