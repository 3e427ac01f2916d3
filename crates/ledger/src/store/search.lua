-- search: up to A.limit entries of one index (a zset) after a cursor (score, member), oldest
-- first or (A.desc) newest first, scores within [A.min, A.max]. Members that share a score sort
-- by name (reversed when newest first), as Redis orders them, so pages neither skip nor repeat.
-- KEYS[1] the index. A: `SearchArgs` (search.rs). Returns members, each followed by its score.
local out = {}
local n = 0
local function take(list)
  for i = 1, #list, 2 do
    if n >= A.limit then return end
    out[#out + 1] = list[i]
    out[#out + 1] = list[i + 1]
    n = n + 1
  end
end
if A.score ~= '' then
  -- The rest of the cursor's own score first (there are few members per millisecond).
  local same = redis.call('ZRANGE', KEYS[1], A.score, A.score, 'BYSCORE', 'WITHSCORES')
  local rest = {}
  if A.desc then
    for i = #same - 1, 1, -2 do
      if same[i] < A.member then rest[#rest + 1] = same[i]; rest[#rest + 1] = same[i + 1] end
    end
  else
    for i = 1, #same, 2 do
      if same[i] > A.member then rest[#rest + 1] = same[i]; rest[#rest + 1] = same[i + 1] end
    end
  end
  local s = tonumber(A.score)
  if s >= tonumber(A.min) and s <= tonumber(A.max) then take(rest) end
end
if n < A.limit then
  local list
  if A.desc then
    local top = A.max
    if A.score ~= '' and tonumber(A.score) <= tonumber(A.max) then top = '(' .. A.score end
    list = redis.call('ZRANGE', KEYS[1], top, A.min, 'BYSCORE', 'REV', 'LIMIT', 0, A.limit - n, 'WITHSCORES')
  else
    local bottom = A.min
    if A.score ~= '' and tonumber(A.score) >= tonumber(A.min) then bottom = '(' .. A.score end
    list = redis.call('ZRANGE', KEYS[1], bottom, A.max, 'BYSCORE', 'LIMIT', 0, A.limit - n, 'WITHSCORES')
  end
  take(list)
end
return out
