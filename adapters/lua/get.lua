-- KEYS[1] the thread's namespace set
-- ARGV: base, ns, checkpoint_id ("" for the latest)
-- Returns {id, record, blob values, write values} or nil.
local base, ns, id = ARGV[1], ARGV[2], ARGV[3]
local idsk, cpk, blk, wik, wvk = ns_keys(base, ns)
if id == '' then
  local newest = redis.call('ZREVRANGE', idsk, 0, 0)
  if #newest == 0 then return false end
  id = newest[1]
end
return load_one(idsk, cpk, blk, wik, wvk, id)
