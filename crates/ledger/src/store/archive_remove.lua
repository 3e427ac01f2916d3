-- archive_remove: removes refunds the archive now holds, leaving a tombstone of each (tomb.lua).
-- Guarantees: only a refund still final and unchanged since it was archived (its updated_at as
-- read then) is removed, so a refund an operator retried after it was read is kept, live; a
-- refund already gone is skipped. A removed refund leaves its record, timeline and every index;
-- its tombstone answers a later enqueue of the same (merchant, out_trade_no) as a duplicate with
-- its final outcome, or as a conflict. Its payment loses it; a payment with no refund left and
-- none in flight is removed too, leaving a tombstone of what was paid and already refunded, so
-- the over-refund guard still counts the archived refunds when the payment is refunded again.
-- KEYS: 1..14 as every record script (1 and 4 the first refund's record and payment), then the
-- record and payment of each further refund: 15, 16 for the second, 17, 18 for the third, …
-- A: `RemoveArgs` (retention.rs); then, from ARGV[A_REST], per refund: id, updated_at, syssn.
-- Returns one word per refund: 'removed' | 'changed' | 'gone'.
local CODE = {succeeded = 's', failed = 'f', cancelled = 'c'}
local out = {}
local a = A_REST
for i = 1, A.count do
  if i > 1 then R, P = KEYS[11 + 2 * i], KEYS[12 + 2 * i] end
  local id, seen, syssn = ARGV[a], ARGV[a + 1], ARGV[a + 2]
  a = a + 3
  local rec = redis.call('HMGET', R, 'state', 'updated_at', 'payload_hash', 'respcd')
  if not rec[1] then
    -- Nothing to remove, but an index entry may be left over: clear it.
    for _, s in ipairs({'succeeded', 'failed', 'cancelled'}) do redis.call('ZREM', STATE_KEY[s], id) end
    redis.call('ZREM', KEYS[14], id)
    out[i] = 'gone'
  elseif not FINAL[rec[1]] or rec[2] ~= seen then
    out[i] = 'changed'
  else
    tomb_put('x', id, string.sub(rec[3] or '', 1, 12) .. ' ' .. A.day .. ' ' .. CODE[rec[1]] .. ' ' .. (rec[4] or ''))
    redis.call('ZREM', STATE_KEY[rec[1]], id)
    redis.call('ZREM', KEYS[14], id)
    redis.call('ZREM', KEYS[2], id)
    redis.call('HDEL', P, 'r:' .. id)
    local rest = redis.call('HGETALL', P)
    local others, paid, committed = false, nil, nil
    for j = 1, #rest, 2 do
      local k = rest[j]
      if k == 'paid' then paid = rest[j + 1]
      elseif k == 'committed' then committed = rest[j + 1]
      else others = true end
    end
    if not others and #rest > 0 then
      if paid or (tonumber(committed) or 0) > 0 then
        tomb_put('xp', syssn, (paid or '-') .. ' ' .. (committed or '0') .. ' ' .. A.day)
      end
      redis.call('DEL', P)
    end
    redis.call('DEL', R, timeline_key())
    out[i] = 'removed'
  end
end
return out
