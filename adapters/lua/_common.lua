-- Shared helpers, prepended to every checkpoint script.
-- Every key of a thread is BASE .. suffix where BASE = "<prefix>:{<thread_id>}:", so all of them
-- hash to one cluster slot; keys built here from BASE are therefore always in the script's slot.

local function ns_keys(base, ns)
  return base .. 'ids:' .. ns, base .. 'cp:' .. ns, base .. 'bl:' .. ns,
         base .. 'wi:' .. ns, base .. 'wv:' .. ns
end

-- A record starts with "<n>:" then n bytes of blob references, each "<len>:<field>".
local function parse_refs(rec)
  local colon = string.find(rec, ':', 1, true)
  local n = tonumber(string.sub(rec, 1, colon - 1))
  local refs = {}
  local pos = colon + 1
  local stop = colon + n
  while pos <= stop do
    local c = string.find(rec, ':', pos, true)
    local len = tonumber(string.sub(rec, pos, c - 1))
    refs[#refs + 1] = string.sub(rec, c + 1, c + len)
    pos = c + len + 1
  end
  return refs
end

local function load_one(idsk, cpk, blk, wik, wvk, id)
  local rec = redis.call('HGET', cpk, id)
  if not rec then return false end
  local refs = parse_refs(rec)
  local blobs = {}
  if #refs > 0 then blobs = redis.call('HMGET', blk, unpack(refs)) end
  local members = redis.call('ZRANGEBYLEX', wik, '[' .. id .. '\0', '(' .. id .. '\1')
  local writes = {}
  if #members > 0 then writes = redis.call('HMGET', wvk, unpack(members)) end
  return {id, rec, blobs, writes, members}
end

local function refresh_ttl(base, ttl)
  if ttl <= 0 then return end
  local nsk = base .. 'ns'
  redis.call('EXPIRE', nsk, ttl)
  for _, ns in ipairs(redis.call('SMEMBERS', nsk)) do
    local a, b, c, d, e = ns_keys(base, ns)
    redis.call('EXPIRE', a, ttl); redis.call('EXPIRE', b, ttl); redis.call('EXPIRE', c, ttl)
    redis.call('EXPIRE', d, ttl); redis.call('EXPIRE', e, ttl)
  end
end
