-- tomb_sweep: removes the tombstones older than idempotency_retention from a few buckets, from a
-- cursor on (`<prefix>:tombs` field `sweep`: '<kind> <level> <bucket>'), so that each call's work
-- is bounded and successive calls go round every bucket of every level. After that a refund's
-- (merchant, out_trade_no) is free again, and a payment's archived refunds are no longer counted.
-- KEYS[1]: any record key of the shard (only its prefix is used). A: `SweepArgs` (retention.rs).
-- Returns {tombstones removed, 1 if the round through every bucket ended with this call}.
local t = tomb_meta()
if t.levels == 0 then return {0, 1} end
local cur = redis.call('HGET', t.meta, 'sweep') or 'x 0 0'
local kind, level, bucket = string.match(cur, '^(%S+) (%d+) (%d+)$')
level, bucket = tonumber(level) or 0, tonumber(bucket) or 0
if kind ~= 'x' and kind ~= 'xp' then kind = 'x' end
local removed, wrapped = 0, 0
for _ = 1, A.buckets do
  local key = string.format('%s:%s:%d:%d', t.prefix, kind, level, bucket)
  local all = redis.call('HGETALL', key)
  local old = {}
  for j = 1, #all, 2 do
    -- A day that does not read (a hand-made or damaged tombstone) keeps it: better kept too
    -- long than an out_trade_no freed early.
    local d = tomb_day(kind, all[j + 1])
    if d and d < A.before_day then old[#old + 1] = all[j] end
  end
  if #old > 0 then
    removed = removed + redis.call('HDEL', key, unpack(old))
    redis.call('HINCRBY', t.meta, tomb_counter(kind, level), -#old)
  end
  bucket = bucket + 1
  if bucket >= t.base * TOMB_GROWTH ^ level then
    bucket, level = 0, level + 1
    if level >= t.levels then
      level = 0
      if kind == 'x' then kind = 'xp' else kind, wrapped = 'x', 1 end
    end
  end
  if wrapped == 1 then break end
end
redis.call('HSET', t.meta, 'sweep', string.format('%s %d %d', kind, level, bucket))
return {removed, wrapped}
