-- claim: the claim of one named refund (see claim_one.lua for what a claim guarantees). Used when a
-- worker claims again after learning a payment's amount, and by tests and tools; workers take
-- due refunds K at a time with claim_due.
-- The caller names the refund's payment and merchant so that every key is declared; a record
-- that does not match them answers {'mismatch'} and nothing is written.
-- KEYS: 1..15 as every record script, 16 the merchant's token bucket. ARGV: `ClaimArgs` (claim.rs).
local rec = redis.call('HMGET', R, 'syssn', 'merchant', 'fresh')
if not rec[1] and not rec[2] then return {'missing'} end
if rec[1] ~= A.syssn or rec[2] ~= A.merchant then return {'mismatch'} end
local answer = claim_one(A.id, A, KEYS[16], served_set(A.served))
-- A fresh refund claimed by name leaves the ready list, as claim_due's would: it is in the
-- due-index now, or done with.
if rec[3] and rec[3] ~= '' then leave_ready(A.id) end
flush_buckets()
return answer
