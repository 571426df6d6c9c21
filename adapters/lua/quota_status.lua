-- A workflow's status changed: keep its place in the queued set, and release its reservation when it ended.
-- Releasing deletes the reservation first, so however often (and by whomever) it is called, the counts move
-- once. The live sets it names from the reservation (live:p:<project>, live:k:<key>) are in the slot {q}
-- with every key below.
-- KEYS: 1 wf:<wid>  2 counts  3 reserved  4 queued
-- ARGV: 1 wid  2 queued | active | ended  3 now  4 the prefix of the live sets ("<P>:{q}:live:")
-- Returns 1 when a reservation was released now, else 0.
local wid, what = ARGV[1], ARGV[2]
if what == 'queued' then
  redis.call('ZADD', KEYS[4], ARGV[3], wid)
  return 0
end
redis.call('ZREM', KEYS[4], wid)
if what ~= 'ended' then
  return 0
end
local held = redis.call('HMGET', KEYS[1], 'p', 'k')
if redis.call('DEL', KEYS[1]) == 0 then
  return 0
end
redis.call('ZREM', KEYS[3], wid)
local function drop(kind, name)
  redis.call('ZREM', ARGV[4] .. kind .. ':' .. name, wid)
  if tonumber(redis.call('ZINCRBY', KEYS[2], -1, kind .. ':' .. name)) <= 0 then
    redis.call('ZREM', KEYS[2], kind .. ':' .. name)
  end
end
if held[1] then
  drop('p', held[1])
end
if held[2] and held[2] ~= '' then
  drop('k', held[2])
end
return 1
