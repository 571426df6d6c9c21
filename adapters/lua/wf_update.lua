-- Change a workflow record, append its events and announce the change: one atomic call, so a
-- reader never sees a status without its event and the step's writes cost one round trip.
-- KEYS[1] the record hash, KEYS[2] its event stream, KEYS[3..] the workflow's other keys (for the TTL).
-- ARGV[1] channel, ARGV[2] notice, ARGV[3] TTL in seconds once the workflow ended (0: none),
-- ARGV[4] n fields, then n field/value pairs, then per event: m, then m field/value pairs.
local nf = tonumber(ARGV[4])
local i = 5
if nf > 0 then
  redis.call('HSET', KEYS[1], unpack(ARGV, i, i + 2 * nf - 1))
end
i = i + 2 * nf
while i <= #ARGV do
  local m = tonumber(ARGV[i])
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', '10000', '*', unpack(ARGV, i + 1, i + 2 * m))
  i = i + 1 + 2 * m
end
local ttl = tonumber(ARGV[3])
if ttl > 0 then
  for k = 1, #KEYS do
    redis.call('EXPIRE', KEYS[k], ttl)
  end
end
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 1
