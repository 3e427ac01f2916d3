-- defer: move a refund's next step later without a transition (rate limit, the nightly window,
-- learning the paid amount). Only while nobody holds it and it is still in the expected state.
-- ARGV: 1 out_trade_no, 2 expected state, 3 next_at ms, 4 now ms, 5 reason
-- Returns: {'ok'} | {'stale'}
local cur = redis.call('HMGET', KEYS[1], 'state', 'lease_until')
if cur[1] ~= ARGV[2] or (tonumber(cur[2]) or 0) > tonumber(ARGV[4]) then return {'stale'} end
redis.call('HSET', KEYS[1], 'next_at', ARGV[3], 'reason', ARGV[5])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
return {'ok'}
