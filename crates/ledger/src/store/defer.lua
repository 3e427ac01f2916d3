-- defer: move a refund's next step later without a transition (rate limit, missing credentials).
-- Only while nobody holds it and it is still in the expected state. A refund deferred past its
-- maximum age goes to needs_review instead, so nothing waits unseen for ever.
-- ARGV: 1 out_trade_no, 2 expected state, 3 next_at ms, 4 now ms, 5 reason, 6 max age ms, 7 stream maxlen
-- Returns: {'ok'} | {'stale'} | {'review'}
local cur = redis.call('HMGET', KEYS[1], 'state', 'lease_until', 'created_at', 'retried_at')
local now = tonumber(ARGV[4])
if cur[1] ~= ARGV[2] or (tonumber(cur[2]) or 0) > now then return {'stale'} end
-- Deferred while 'submitting' (its holder vanished): it may have been sent.
if cur[1] == 'submitting' then redis.call('HSET', KEYS[1], 'uncertain', 1) end
if now - math.max(tonumber(cur[3]) or now, tonumber(cur[4]) or 0) >= tonumber(ARGV[6]) then
  review(ARGV[1], cur[1], 'max age reached while waiting: ' .. ARGV[5], now, ARGV[7])
  return {'review'}
end
redis.call('HSET', KEYS[1], 'next_at', ARGV[3], 'reason', ARGV[5])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
return {'ok'}
