-- tomb_get: the tombstone of a refund (kind 'x', name its id) or a payment ('xp', its syssn), or
-- nil (see tomb.lua). KEYS[1]: any record key of the shard (only its prefix is used).
if tomb_meta().levels == 0 then return false end
local v = tomb_find(A.kind, A.name)
return v or false
