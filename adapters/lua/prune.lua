-- KEYS[1] the thread's namespace set; ARGV: base
-- Keeps the newest checkpoint of every namespace with its writes and the blobs it references.
local base = ARGV[1]
for _, ns in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local idsk, cpk, blk, wik, wvk = ns_keys(base, ns)
  local newest = redis.call('ZREVRANGE', idsk, 0, 0)
  if #newest == 0 then
    redis.call('DEL', idsk, cpk, blk, wik, wvk)
  else
    local keep = newest[1]
    local old = redis.call('ZRANGE', idsk, 0, -2)
    for _, id in ipairs(old) do
      redis.call('HDEL', cpk, id)
      redis.call('ZREM', idsk, id)
    end
    -- writes of other checkpoints
    for _, m in ipairs(redis.call('ZRANGE', wik, 0, -1)) do
      if string.sub(m, 1, #keep + 1) ~= keep .. '\0' then
        redis.call('ZREM', wik, m)
        redis.call('HDEL', wvk, m)
      end
    end
    -- blobs the kept checkpoint does not reference
    local wanted = {}
    for _, f in ipairs(parse_refs(redis.call('HGET', cpk, keep))) do wanted[f] = true end
    for _, f in ipairs(redis.call('HKEYS', blk)) do
      if not wanted[f] then redis.call('HDEL', blk, f) end
    end
  end
end
return 1
