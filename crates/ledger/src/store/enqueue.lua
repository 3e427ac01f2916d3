-- enqueue: one refund (see enqueue_one.lua for what it guarantees).
-- ARGV: 1 out_trade_no, 2 payload_hash, 3 now ms, 4 stream maxlen, 5 orig_txamt or '', 6.. field/value pairs
local fields = {}
for i = 6, #ARGV do fields[#fields + 1] = ARGV[i] end
return enqueue_one(ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5], fields)
