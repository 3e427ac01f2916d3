-- Tombstones: what stays in Redis of a refund after it was archived and removed, and of its
-- payment once no refund of it is left (see store/retention.rs for why and for how long).
--   a refund:  field <id>     value '<payload hash, 12 hex> <day> <s|f|c> <respcd>'
--   a payment: field <syssn>  value '<paid or -> <committed> <day>'
-- <day>: the day (since 1970, base 36) the tombstone was written; the sweep removes it once it is
-- older than idempotency_retention.
-- Tombstones live in small hashes ("buckets", `<prefix>:x:<level>:<n>` for refunds and
-- `<prefix>:xp:<level>:<n>` for payments), so that each stays in Redis' compact encoding (a few
-- dozen bytes a tombstone, where a key of its own would cost over a hundred). A level has
-- TOMB_BASE * TOMB_GROWTH^level buckets; when a level holds TOMB_FILL tombstones a bucket on
-- average, the next one opens (`<prefix>:tombs`: levels, n<level> = how many a level holds), so a
-- shard's buckets grow with its tombstones without moving any. Lookups try every level, newest
-- first. Works on R (the record key: the shard's prefix is read from it).
local TOMB_BASE, TOMB_GROWTH, TOMB_FILL, TOMB_MAX_LEVELS = 1024, 8, 96, 7
local TOMB = nil

local function tomb_meta()
  if not TOMB then
    local prefix = string.match(R, '^(.-})%:r%:')
    local meta = prefix .. ':tombs'
    TOMB = {prefix = prefix, meta = meta, levels = tonumber(redis.call('HGET', meta, 'levels')) or 0}
  end
  return TOMB
end

-- The bucket hash (store::retention::bucket_hash is the same function): exact in Lua's doubles.
local function tomb_hash(s)
  local h = 0
  for i = 1, #s do h = (h * 31 + string.byte(s, i)) % 2147483647 end
  return h
end

local function tomb_key(kind, level, name)
  local size = TOMB_BASE * TOMB_GROWTH ^ level
  return string.format('%s:%s:%d:%d', tomb_meta().prefix, kind, level, tomb_hash(name) % size)
end

-- The tombstone of `name` (kind 'x': a refund id, 'xp': a payment's syssn) and its level, or nil.
local function tomb_find(kind, name)
  local t = tomb_meta()
  for level = t.levels - 1, 0, -1 do
    local v = redis.call('HGET', tomb_key(kind, level, name), name)
    if v then return v, level end
  end
  return nil
end

local function tomb_put(kind, name, value)
  local t = tomb_meta()
  if t.levels == 0 then
    t.levels = 1
    redis.call('HSET', t.meta, 'levels', 1)
  end
  local top = t.levels - 1
  if redis.call('HSET', tomb_key(kind, top, name), name, value) == 1 then
    local n = redis.call('HINCRBY', t.meta, 'n' .. top, 1)
    if n > TOMB_FILL * TOMB_BASE * TOMB_GROWTH ^ top and t.levels < TOMB_MAX_LEVELS then
      t.levels = t.levels + 1
      redis.call('HSET', t.meta, 'levels', t.levels)
    end
  end
end

local function tomb_del(kind, level, name)
  if redis.call('HDEL', tomb_key(kind, level, name), name) == 1 then
    redis.call('HINCRBY', tomb_meta().meta, 'n' .. level, -1)
  end
end
