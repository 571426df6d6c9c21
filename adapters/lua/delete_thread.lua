-- KEYS[1] the thread's namespace set; ARGV: base
local base = ARGV[1]
for _, ns in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local a, b, c, d, e = ns_keys(base, ns)
  redis.call('DEL', a, b, c, d, e)
end
redis.call('DEL', KEYS[1])
return 1
