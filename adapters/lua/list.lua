-- KEYS[1] the thread's namespace set
-- ARGV: base, ns, upper bound for ZREVRANGEBYLEX ("+" or "(<id>"), count
-- Returns up to `count` loaded checkpoints, newest first.
local base, ns, upper, count = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local idsk, cpk, blk, wik, wvk = ns_keys(base, ns)
local ids = redis.call('ZREVRANGEBYLEX', idsk, upper, '-', 'LIMIT', 0, count)
local out = {}
for _, id in ipairs(ids) do
  local one = load_one(idsk, cpk, blk, wik, wvk, id)
  if one then out[#out + 1] = one end
end
return out
