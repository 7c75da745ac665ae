-- Checks and counts one campaign display for one user, atomically, so that
-- limits hold across devices and nodes.
-- KEYS[1]: the prefix of Herald's own keys.
-- ARGV: campaign, user, msg id, now_ms, max (0: no limit),
--       per_s (0: for ever), until ("0"|"1"), global cap per hour (0: exempt).
-- Returns 1 allowed, 0 frequency, -1 global cap, -2 until reached.
local p, c, u, msg, now = KEYS[1], ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local max, per, until_set, cap = tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7], tonumber(ARGV[8])
local fkey = p .. ':freq:' .. c .. ':' .. u
if until_set == '1' and redis.call('EXISTS', p .. ':freqdone:' .. c .. ':' .. u) == 1 then return -2 end
if max > 0 then
  if per > 0 then redis.call('ZREMRANGEBYSCORE', fkey, '-inf', now - per * 1000) end
  if redis.call('ZCARD', fkey) >= max then return 0 end
end
local gkey = p .. ':cap:' .. u
if cap > 0 then
  redis.call('ZREMRANGEBYSCORE', gkey, '-inf', now - 3600000)
  if redis.call('ZCARD', gkey) >= cap then return -1 end
  redis.call('ZADD', gkey, now, msg)
  redis.call('PEXPIRE', gkey, 3600000)
end
if max > 0 then
  redis.call('ZADD', fkey, now, msg)
  if per > 0 then redis.call('PEXPIRE', fkey, per * 1000) end
end
return 1
