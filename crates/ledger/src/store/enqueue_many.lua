-- enqueue_many: up to a few hundred refunds in one call, each exactly as enqueue would (see
-- enqueue_one.lua): a batch import costs one script call per chunk instead of one per line.
-- KEYS: 1..15 as every record script (1 and 4 are the first refund's record and payment), 16 the
-- shard's merchants, 17 those placed elsewhere, 18 the layout (see enqueue_one.lua), then the
-- record and payment of each further refund: 19, 20 for the second, 21, 22 for the third, …
-- A: `EnqueueManyArgs` (enqueue.rs); then, from ARGV[A_REST], per refund: out_trade_no,
--       payload_hash, orig_txamt or '', number of fields, field/value pairs (`otn` below is the
--       refund's id in the shard).
-- Returns one answer per refund, its words joined by spaces: 'created <id>' | 'duplicate <id>' |
-- 'conflict <id>' | 'paid_mismatch <paid>' | 'misplaced'.
local now, maxlen, n = A.now, A.maxlen, A.count
local out = {}
local a = A_REST
for i = 1, n do
  if i > 1 then R, P = KEYS[17 + 2 * (i - 1)], KEYS[18 + 2 * (i - 1)] end
  local otn, hash, orig, nf = ARGV[a], ARGV[a + 1], ARGV[a + 2], tonumber(ARGV[a + 3])
  local fields = {}
  for j = 1, nf * 2 do fields[j] = ARGV[a + 3 + j] end
  a = a + 4 + nf * 2
  out[i] = table.concat(enqueue_one(otn, hash, now, maxlen, orig, fields), ' ')
end
return out
