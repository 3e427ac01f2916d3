-- take_webhook: one worker takes a webhook delivery that is due for its next attempt.
-- Guarantees: only a delivery that is due now is taken, and taking it holds it (its score moves to
-- the hold) in the same step, so two workers that both saw it due never both send it.
-- KEYS[1] the retry schedule (zset: event id -> when). A: `TakeWebhookArgs` (webhooks.rs).
-- Returns 1 when taken, 0 when it is not on the schedule or not due (another worker holds it).
local at = redis.call('ZSCORE', KEYS[1], A.event_id)
if not at or tonumber(at) > A.now then return 0 end
redis.call('ZADD', KEYS[1], A.hold_until, A.event_id)
return 1
