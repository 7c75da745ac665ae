-- Scheduled messages (SPEC 10.3): one script per step, each atomic.
-- KEYS[1]: the prefix of Herald's own keys. The waiting messages are the
-- sorted set {p}:scheduled (member: id, score: when it is due, unix ms)
-- and the hash {p}:scheduled:envelopes (id to envelope JSON).
-- ARGV[1] names the step:
--   add id at json max      holds a message (the same id replaces it);
--                           0 when max are waiting already
--   claim batch lease_ms    takes up to batch messages due by Redis's own
--                           clock and leases them: their score becomes
--                           now + lease_ms, so no other node claims them
--                           meanwhile, and one whose claimer died is due
--                           again after it; returns {lease, id, json, ...}
--   settle id lease         forgets a message published under that lease
--                           (not one replaced or cancelled since)
--   cancel id               1 if it was waiting, else 0
local p = KEYS[1]
local z, h = p .. ':scheduled', p .. ':scheduled:envelopes'
local step = ARGV[1]
if step == 'add' then
  local id = ARGV[2]
  if not redis.call('ZSCORE', z, id) and redis.call('ZCARD', z) >= tonumber(ARGV[5]) then
    return 0
  end
  redis.call('ZADD', z, ARGV[3], id)
  redis.call('HSET', h, id, ARGV[4])
  return 1
elseif step == 'claim' then
  -- Redis's clock, not the caller's: skew between nodes cannot make a
  -- message due early on one of them, and the lease is on one clock too.
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local lease = now + tonumber(ARGV[3])
  local ids = redis.call('ZRANGEBYSCORE', z, '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
  local out = { lease }
  for _, id in ipairs(ids) do
    local env = redis.call('HGET', h, id)
    if env then
      redis.call('ZADD', z, lease, id)
      out[#out + 1] = id
      out[#out + 1] = env
    else
      redis.call('ZREM', z, id)
    end
  end
  return out
elseif step == 'settle' then
  local score = redis.call('ZSCORE', z, ARGV[2])
  if score and tonumber(score) == tonumber(ARGV[3]) then
    redis.call('ZREM', z, ARGV[2])
    redis.call('HDEL', h, ARGV[2])
    return 1
  end
  return 0
elseif step == 'cancel' then
  if redis.call('ZREM', z, ARGV[2]) == 1 then
    redis.call('HDEL', h, ARGV[2])
    return 1
  end
  return 0
end
return redis.error_reply('schedule.lua: unknown step ' .. tostring(step))
