-- Publishes one envelope, storing it first when it must outlive the
-- publish (sticky or require_ack), all in one atomic step.
-- Users of a `fallback` message whom no node holds go to the undelivered
-- stream here, so every publishing path (API, CLI, ingress) records them.
-- KEYS[1]: the prefix of Herald's own keys (hash-tagged in a cluster).
-- ARGV: prefix of channels and public streams, id, envelope,
--       store ("none"|"active"|"pending"), collapse_key or "", expires_at_ms
--       or "0", respect_tombstone ("0"|"1"), route ("broadcast"|"users"|
--       "broadcast_stored"|"users_stored"|"none"), fallback ("0"|"1"), stream maxlen,
--       campaign or "", publisher node, history ("0"|"1"), history window
--       ms, history maxlen, an epoch to use if none exists, then the users.
-- With history, the envelope is first appended to the history stream
-- (`{p}:history` for broadcast audiences, `{p}:history:user:{u}` per named
-- user) under one id for all of them, and published with
-- `"pos":"{epoch}.{id}"` added, so a client can resume after it.
-- Routes "…_stored" are for a Redis Cluster: everything but the publishing,
-- which the caller does (SPUBLISH on a user channel's own slot; PUBLISH on
-- the broadcast channel's slot, the Redis node where Herald nodes listen to
-- it, so that it does not trail the next per-user message through the
-- cluster bus); the script then returns {0, envelope as published}.
-- Returns the PUBLISH reply per channel (one for broadcast), or {-1} when
-- the id was retracted moments ago and respect_tombstone is set.
local p, c = KEYS[1], ARGV[1]
local id, env, store, collapse = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local expires, respect, route = tonumber(ARGV[6]), ARGV[7], ARGV[8]
local fallback, maxlen, campaign, node = ARGV[9], ARGV[10], ARGV[11], ARGV[12]
local history, window, hmax, epoch_candidate = ARGV[13], tonumber(ARGV[14]), ARGV[15], ARGV[16]
local FIRST_USER = 17
local caller_publishes = false
if route == 'broadcast_stored' then route, caller_publishes = 'broadcast', true end
if route == 'users_stored' then route, caller_publishes = 'users', true end
local tomb = p .. ':retracted:' .. id
if redis.call('EXISTS', tomb) == 1 then
  if respect == '1' then return {-1} end
  redis.call('DEL', tomb)
end

local function expire_with(key, existed)
  -- A key holding a message without expiry never expires; otherwise it
  -- lives as long as its longest-lived message.
  local current = redis.call('PEXPIRETIME', key)
  if expires == 0 then
    redis.call('PERSIST', key)
  elseif not existed or (current > 0 and current < expires) then
    redis.call('PEXPIREAT', key, expires)
  end
end

if history == '1' and route ~= 'none' then
  local epoch, hid, ms = history_id(p, epoch_candidate)
  if route == 'broadcast' then
    history_append(p, 'history', hid, env, ms, window, hmax)
  else
    for i = FIRST_USER, #ARGV do history_append(p, 'history:user:' .. ARGV[i], hid, env, ms, window, hmax) end
  end
  env = with_pos(env, epoch, hid)
end

if store == 'active' then
  if collapse ~= '' then
    local old = redis.call('HGET', p .. ':collapse', collapse)
    if old and old ~= id then redis.call('HDEL', p .. ':active', old); redis.call('DEL', p .. ':acked:' .. old) end
    redis.call('HSET', p .. ':collapse', collapse, id)
  end
  redis.call('HSET', p .. ':active', id, env)
elseif store == 'pending' then
  local users_key = p .. ':msgusers:' .. id
  local existed = redis.call('EXISTS', users_key) == 1
  for i = FIRST_USER, #ARGV do
    local key = p .. ':pending:' .. ARGV[i]
    local had = redis.call('EXISTS', key) == 1
    redis.call('HSET', key, id, env)
    expire_with(key, had)
    redis.call('SADD', users_key, ARGV[i])
  end
  expire_with(users_key, existed)
end

if route == 'none' then return {} end
if caller_publishes then return {0, env} end

local replies = {}
if route == 'broadcast' then
  replies[1] = redis.call('PUBLISH', c .. ':broadcast', env)
else
  local now = redis.call('TIME')
  local ts = tostring(now[1] * 1000 + math.floor(now[2] / 1000))
  for i = FIRST_USER, #ARGV do
    local n = redis.call('PUBLISH', c .. ':user:' .. ARGV[i], env)
    replies[#replies + 1] = n
    if n == 0 and fallback == '1' then
      local fields = {c .. ':undelivered', 'MAXLEN', '~', maxlen, '*',
        'type', 'undelivered', 'msg', id, 'user', ARGV[i], 'node', node, 'ts', ts}
      if campaign ~= '' then fields[#fields + 1] = 'campaign'; fields[#fields + 1] = campaign end
      redis.call('XADD', unpack(fields))
    end
  end
end
return replies
