-- enqueue: create a refund record, or recognise it.
-- Guarantees: one record per out_trade_no, ever. The same payload again returns 'duplicate' and
-- changes nothing; another payload returns 'conflict' and changes nothing. A paid amount that
-- disagrees with the one recorded for the payment is refused. A new record is queued, due now,
-- indexed (also under its payment), and announced on the outcome stream, all in one step.
-- ARGV: 1 out_trade_no, 2 payload_hash, 3 now ms, 4 stream maxlen, 5 orig_txamt or '', 6.. field/value pairs
local otn, hash, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
local existing = redis.call('HGET', KEYS[1], 'payload_hash')
if existing then
  if existing == hash then return {'duplicate'} end
  return {'conflict'}
end
if ARGV[5] ~= '' then
  local paid = redis.call('HGET', KEYS[4], 'paid')
  if paid and paid ~= ARGV[5] then return {'paid_mismatch', paid} end
  redis.call('HSET', KEYS[4], 'paid', ARGV[5])
end
-- The payment's refunds, for look-ups by syssn: one field per refund in the payment's hash.
redis.call('HSET', KEYS[4], 'r:' .. otn, now)
redis.call('ZADD', KEYS[14], now, otn)
write_fields(6, {'payload_hash', hash, 'fence', 0, 'created_at', now, 'updated_at', now, 'next_at', now,
  'submits', 0, 'enquiries', 0, 'retries', 0, 'not_found', 0})
set_state(otn, nil, 'queued', now)
redis.call('ZADD', KEYS[2], now, otn)
emit('', now, ARGV[4])
return {'created'}
