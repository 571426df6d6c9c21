-- KEYS[1] the thread's namespace set
-- ARGV: base, ns, ttl, then triples: member ("<checkpoint_id>\0<task_id>\0<idx>"), value, overwrite ("1"/"0")
-- A write with a regular index is kept as first written (a retried task must not change history);
-- special channels (error, interrupt, resume, scheduled) carry negative indexes and are replaced.
local base, ns, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local _, _, _, wik, wvk = ns_keys(base, ns)
redis.call('SADD', KEYS[1], ns)
for i = 4, #ARGV, 3 do
  local member, value, overwrite = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if overwrite == '1' then
    redis.call('HSET', wvk, member, value)
    redis.call('ZADD', wik, 0, member)
  elseif redis.call('HSETNX', wvk, member, value) == 1 then
    redis.call('ZADD', wik, 0, member)
  end
end
refresh_ttl(base, ttl)
return 1
