-- An attempt whose answer the worker could not record: another worker had taken the refund over
-- (the first one's lease ran out while its request was in flight). The refund's outcome is the
-- other worker's, from its enquiry; this row is what the first request was and got.
ALTER TABLE refund_attempts ADD COLUMN fenced_off boolean NOT NULL DEFAULT false;
