-- Reserve a workflow's place under its project's and its key's quotas, or refuse and write nothing.
-- Every key is in the slot {q} (one node on Redis Cluster): project and key are checked and counted at once.
-- KEYS: 1 live:p:<project>  2 live:k:<key>  3 starts:p:<project>  4 starts:k:<key>  5 wf:<wid>  6 counts
--       7 reserved  8 queued      (without a key, 2 and 4 repeat 1 and 3)
-- ARGV: 1 wid  2 now  3 window  4 project max in flight  5 project starts per window  6 key max in flight
--       7 key starts per window  8 has key (0/1)  9 project  10 key  11 counts as a start (0/1)
-- Limits of 0 are none. Returns {1, "reserved"} | {1, "held"} (reserved before) |
-- {0, scope, quota, used, limit, retry after in ms (-1: when one of them ends)}.
if redis.call('EXISTS', KEYS[5]) == 1 then
  return {1, 'held'}
end
local now, window = tonumber(ARGV[2]), tonumber(ARGV[3])
local starting = ARGV[11] == '1'
local function check(live, starts, max_live, max_starts, scope)
  if max_live > 0 then
    local used = redis.call('ZCARD', live)
    if used >= max_live then
      return {0, scope, 'max_in_flight', used, max_live, -1}
    end
  end
  if starting and max_starts > 0 then
    local since = '(' .. tostring(now - window)
    local used = redis.call('ZCOUNT', starts, since, '+inf')
    if used >= max_starts then
      local oldest = redis.call('ZRANGEBYSCORE', starts, since, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
      return {0, scope, 'starts_per_minute', used, max_starts,
              math.ceil((tonumber(oldest[2]) + window - now) * 1000)}
    end
  end
  return nil
end
local has_key = ARGV[8] == '1'
local refused = check(KEYS[1], KEYS[3], tonumber(ARGV[4]), tonumber(ARGV[5]), 'project')
if not refused and has_key then
  refused = check(KEYS[2], KEYS[4], tonumber(ARGV[6]), tonumber(ARGV[7]), 'key')
end
if refused then
  return refused
end
local wid = ARGV[1]
redis.call('ZADD', KEYS[1], now, wid)
redis.call('ZINCRBY', KEYS[6], 1, 'p:' .. ARGV[9])
if has_key then
  redis.call('ZADD', KEYS[2], now, wid)
  redis.call('ZINCRBY', KEYS[6], 1, 'k:' .. ARGV[10])
end
if starting then
  local starts = {KEYS[3]}
  if has_key then
    starts[2] = KEYS[4]
  end
  for _, k in ipairs(starts) do
    redis.call('ZREMRANGEBYSCORE', k, '-inf', now - window)
    redis.call('ZADD', k, now, wid)
    redis.call('EXPIRE', k, math.ceil(window) + 10)
  end
end
redis.call('HSET', KEYS[5], 'p', ARGV[9], 'k', has_key and ARGV[10] or '', 'at', now)
redis.call('ZADD', KEYS[7], now, wid)
redis.call('ZADD', KEYS[8], now, wid)
return {1, 'reserved'}
