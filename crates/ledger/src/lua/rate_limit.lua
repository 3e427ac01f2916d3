-- rate_limit: a token bucket per merchant (QFPay allows 100 req/s and 400 req/min per merchant,
-- shared with its payments). Takes one token if there is one.
-- KEYS[1] the bucket (hash: tokens, at). ARGV: 1 rate per second, 2 burst, 3 now ms.
-- Returns 0 when a token was taken, else the ms until one will be there.
local rate, burst, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens, at = tonumber(b[1]) or burst, tonumber(b[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate / 1000)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = math.ceil((1 - tokens) * 1000 / rate) end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
return wait
