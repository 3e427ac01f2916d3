-- feed: take up to `limit` due refunds off the due-index for delivery to a worker, and hold each
-- for `hold` ms so the next feed does not deliver it again. If the delivery is lost (a dropped
-- job, a dead worker), the hold expires and the refund is due again: nothing depends on a job.
-- KEYS[1] the due-index. ARGV: 1 now ms, 2 limit, 3 hold ms. Returns the out_trade_nos.
local now, hold = tonumber(ARGV[1]), tonumber(ARGV[3])
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
for _, otn in ipairs(due) do redis.call('ZADD', KEYS[1], 'XX', now + hold, otn) end
return due
