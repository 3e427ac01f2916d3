-- pause: pause or resume a merchant's submits, and audit it, in one script (so the audit trail
-- never misses a pause or resume that happened, nor records one that did not).
-- KEYS[1] paused merchants (hash), KEYS[2] the audit stream (see operate.lua)
-- A: `PauseArgs` (pause.rs): action ('pause' | 'resume'), merchant, who, why, now ms.
-- Returns: 1 when it changed something (newly paused, or was paused), else 0.
local action, merchant, who, why, now = A.action, A.merchant, A.who, A.why, A.now
local was = redis.call('HEXISTS', KEYS[1], merchant) == 1
local changed
if action == 'pause' then
  redis.call('HSET', KEYS[1], merchant, why)
  changed = not was
else
  redis.call('HDEL', KEYS[1], merchant)
  changed = was
end
local function shown(paused) if paused then return 'paused' else return 'running' end end
redis.call('XADD', KEYS[2], '*', 'out_trade_no', '', 'merchant', merchant, 'action', action, 'who', who,
  'why', why, 'from', shown(was), 'to', shown(action == 'pause'), 'outcome', 'ok', 'at', now)
if changed then return 1 end
return 0
