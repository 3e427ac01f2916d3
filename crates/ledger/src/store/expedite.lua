-- expedite: make a refund that waits for an enquiry due now (QFPay notified us of its outcome).
-- Only a refund in 'pending' that nobody holds: the enquiry stays authoritative, and nothing else
-- (a resend, a queued submit) is ever brought forward by a notification.
-- A: `ExpediteArgs` (due.rs). Returns {'ok'} | {'skip', why}
local otn, now = A.id, A.now
local cur = redis.call('HMGET', KEYS[1], 'state', 'lease_until', 'next_at')
if not cur[1] then return {'skip', 'no such refund'} end
if cur[1] ~= 'pending' then return {'skip', 'state ' .. cur[1]} end
if (tonumber(cur[2]) or 0) > now then return {'skip', 'held by a worker'} end
if (tonumber(cur[3]) or 0) <= now then return {'skip', 'already due'} end
redis.call('HSET', KEYS[1], 'next_at', now)
redis.call('ZADD', KEYS[2], now, otn)
return {'ok'}
