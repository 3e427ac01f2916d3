-- enqueue: one refund (see enqueue_one.lua for what it guarantees).
-- A: `EnqueueArgs` (enqueue.rs); the record's field/value pairs follow, from ARGV[A_REST].
local fields = {}
for i = A_REST, #ARGV do fields[#fields + 1] = ARGV[i] end
return enqueue_one(A.id, A.payload_hash, A.now, A.maxlen, A.orig_txamt, fields)
