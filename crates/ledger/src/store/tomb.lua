-- Tombstones: what stays in Redis of a refund after it was archived and removed, and of its
-- payment once no refund of it is left (see store/retention.rs for why and for how long).
-- Callers see a tombstone as text:
--   a refund:  '<payload hash, 12 hex> <day> <s|f|c> <respcd>'
--   a payment: '<paid or -> <committed> <day>'
-- <day>: the day (since 1970, base 36) the tombstone was written; the sweep removes it once it is
-- older than idempotency_retention.
-- Stored compactly (a ledger whose layout says `tombstones` 2): the field is the first 8 bytes
-- of the name's SHA-1 (a refund id or a syssn; an out_trade_no can be 64 bytes long), the value
-- binary: a refund '\1' + 6 bytes of hash (or '\3' without one) + the day in 2 bytes + the state
-- letter + the respcd; a payment '\2' + the day in 2 bytes + '<paid> <committed>'. Written as text
-- (the field the name itself) on a ledger still at `tombstones` 1, where processes from before
-- the compact form may read them; lookups read both forms.
-- Tombstones live in small hashes ("buckets", `<prefix>:x:<level>:<n>` for refunds and
-- `<prefix>:xp:<level>:<n>` for payments), so that each stays in Redis' compact encoding (a few
-- dozen bytes a tombstone, where a key of its own would cost over a hundred). A level has
-- base * TOMB_GROWTH^level buckets (base 256 where tombstones were compact from the start, else
-- 1024); when a level holds TOMB_FILL tombstones a bucket on
-- average, the next one opens (`<prefix>:tombs`: levels, n<level> = how many refunds' a level
-- holds and p<level> how many payments' (split 1; before, n counts both), format 2 when it never
-- held text tombstones, base), so a shard's buckets grow with its tombstones
-- without moving any. Lookups try every level, newest first. Works on R (the record key: the
-- shard's prefix is read from it).
local TOMB_GROWTH, TOMB_FILL, TOMB_MAX_LEVELS = 8, 96, 7
local TOMB = nil
-- Set by the one script that writes tombstones (archive_remove), from the layout.
local TOMB_COMPACT = false

local function tomb_meta()
  if not TOMB then
    local prefix = string.match(R, '^(.-})%:r%:')
    local meta = prefix .. ':tombs'
    local m = redis.call('HMGET', meta, 'levels', 'format', 'base', 'split')
    TOMB = {prefix = prefix, meta = meta, levels = tonumber(m[1]) or 0, text = m[2] ~= '2',
            base = tonumber(m[3]) or 1024, split = m[4] == '1'}
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
  local size = tomb_meta().base * TOMB_GROWTH ^ level
  return string.format('%s:%s:%d:%d', tomb_meta().prefix, kind, level, tomb_hash(name) % size)
end

-- The compact field of a name: 8 bytes of its SHA-1. Another name matching a tombstone needs
-- the same bucket and the same 64 bits: odds under 1 in 10^17 per lookup; and such a match would
-- refuse the new refund as a conflict (its request's hash differs), never refund twice.
-- The meta field counting a level's tombstones of a kind.
local function tomb_counter(kind, level)
  if kind == 'xp' and tomb_meta().split then return 'p' .. level end
  return 'n' .. level
end

local function tomb_field(name)
  return (string.gsub(string.sub(redis.sha1hex(name), 1, 16), '%x%x', function(x)
    return string.char(tonumber(x, 16))
  end))
end

local function tomb_base36(n)
  local digits, out = '0123456789abcdefghijklmnopqrstuvwxyz', ''
  repeat
    local d = n % 36
    out = string.sub(digits, d + 1, d + 1) .. out
    n = (n - d) / 36
  until n == 0
  return out
end

local function tomb_two(n)
  return string.char(math.floor(n / 256) % 256, n % 256)
end

-- The stored (compact) value of a tombstone's text; nil if the text does not read.
local function tomb_pack(kind, text)
  if kind == 'x' then
    local h, d, st, rc = string.match(text, '^(%S+) (%w+) (%a) ?(.*)$')
    local day = tonumber(d or '', 36)
    if not h or not day or day > 65535 then return nil end
    local head = '\3'
    if #h == 12 and string.match(h, '^%x+$') then
      head = '\1' .. string.gsub(h, '%x%x', function(x) return string.char(tonumber(x, 16)) end)
    end
    return head .. tomb_two(day) .. st .. rc
  end
  local p, c, d = string.match(text, '^(%S+) (%S+) (%w+)$')
  local day = tonumber(d or '', 36)
  if not day or day > 65535 then return nil end
  return '\2' .. tomb_two(day) .. p .. ' ' .. c
end

-- The day (a number) a stored tombstone was written, either form; nil if it does not read.
local function tomb_day(kind, v)
  local b = string.byte(v, 1)
  local at = (b == 1 and 8) or ((b == 2 or b == 3) and 2) or nil
  if at then
    if #v < at + 1 then return nil end
    return string.byte(v, at) * 256 + string.byte(v, at + 1)
  end
  local day
  if kind == 'x' then day = string.match(v, '^%S+ (%w+)') else day = string.match(v, '(%w+)$') end
  return tonumber(day or '', 36)
end

-- A stored tombstone as text (a text one as it is).
local function tomb_unpack(v)
  local b = string.byte(v, 1)
  if b ~= 1 and b ~= 2 and b ~= 3 then return v end
  local day = tomb_day('x', v)
  if not day then return '' end
  if b == 2 then return string.sub(v, 4) .. ' ' .. tomb_base36(day) end
  local h, at = '-', 4
  if b == 1 then
    h = string.gsub(string.sub(v, 2, 7), '.', function(c) return string.format('%02x', string.byte(c)) end)
    at = 10
  end
  return h .. ' ' .. tomb_base36(day) .. ' ' .. string.sub(v, at, at) .. ' ' .. string.sub(v, at + 1)
end

-- The tombstone of `name` (kind 'x': a refund id, 'xp': a payment's syssn) as text, its level
-- and the field it is stored under, or nil.
local function tomb_find(kind, name)
  local t = tomb_meta()
  local field = tomb_field(name)
  for level = t.levels - 1, 0, -1 do
    local key = tomb_key(kind, level, name)
    local v = redis.call('HGET', key, field)
    if v then return tomb_unpack(v), level, field end
    if t.text then
      v = redis.call('HGET', key, name)
      if v then return v, level, name end
    end
  end
  return nil
end

local function tomb_put(kind, name, text)
  local t = tomb_meta()
  if t.levels == 0 then
    t.levels = 1
    if TOMB_COMPACT then
      t.text, t.base, t.split = false, 256, true
      redis.call('HSET', t.meta, 'levels', 1, 'format', 2, 'base', 256, 'split', 1)
    else
      redis.call('HSET', t.meta, 'levels', 1)
    end
  end
  local field, value = name, text
  if TOMB_COMPACT then
    local packed = tomb_pack(kind, text)
    if packed then
      field, value = tomb_field(name), packed
    elseif not t.text then
      -- A text that does not pack (never written so: the callers build it) stays text, and
      -- lookups read text again.
      t.text = true
      redis.call('HDEL', t.meta, 'format')
    end
  end
  local top = t.levels - 1
  if redis.call('HSET', tomb_key(kind, top, name), field, value) == 1 then
    local n = redis.call('HINCRBY', t.meta, tomb_counter(kind, top), 1)
    if n > TOMB_FILL * t.base * TOMB_GROWTH ^ top and t.levels < TOMB_MAX_LEVELS then
      t.levels = t.levels + 1
      redis.call('HSET', t.meta, 'levels', t.levels)
    end
  end
end

local function tomb_del(kind, level, name, field)
  if redis.call('HDEL', tomb_key(kind, level, name), field) == 1 then
    redis.call('HINCRBY', tomb_meta().meta, tomb_counter(kind, level), -1)
  end
end
