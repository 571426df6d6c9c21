-- KEYS[1] the thread's namespace set (declares the slot)
-- ARGV: base, ns, checkpoint_id, record, ttl, then blob field/value pairs
local base, ns, id, rec, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local idsk, cpk, blk = ns_keys(base, ns)
redis.call('SADD', KEYS[1], ns)
redis.call('ZADD', idsk, 0, id)
redis.call('HSET', cpk, id, rec)
for i = 6, #ARGV, 2 do
  redis.call('HSET', blk, ARGV[i], ARGV[i + 1])
end
refresh_ttl(base, ttl)
return 1
