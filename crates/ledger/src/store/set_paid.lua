-- set_paid: record what a payment was paid, as learned by enquiry, unless already known.
-- A: `SetPaidArgs` (transition.rs). Returns the amount now recorded.
redis.call('HSETNX', KEYS[4], 'paid', A.paid)
return redis.call('HGET', KEYS[4], 'paid')
