-- A user clicked or dismissed a message (SPEC §10.1): it is never sent to
-- them again (out of their pending messages; marked in `{p}:acked:{id}`,
-- which the sticky replay and the resume consult), and their other
-- sessions, on every node, take it off the screen: a retraction on the
-- user's own channel, appended to their history so a session resuming
-- past it does too. The mark lives as long as the message can reach them:
-- with an active message until it expires or is retracted (retract.lua and
-- a collapse_key replacement delete it), otherwise as long as the history
-- keeps it.
-- KEYS[1]: the prefix of Herald's own keys. ARGV: id, user, prefix of
-- channels, history ("0"|"1"), history window ms, history maxlen, an epoch
-- candidate, caller publishes ("0"|"1": on a Redis Cluster the caller
-- SPUBLISHes the returned envelope on the user's channel), the mark's
-- lifetime (ms) for a message that is not active, the session that
-- acknowledged (`node.sid`, left out of the retraction).
local p, id, user, c = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local history, window, hmax, epoch_candidate = ARGV[4], tonumber(ARGV[5]), ARGV[6], ARGV[7]
local caller_publishes, lifetime = ARGV[8] == '1', tonumber(ARGV[9])
redis.call('HDEL', p .. ':pending:' .. user, id)
local key = p .. ':acked:' .. id
local existed = redis.call('EXISTS', key) == 1
redis.call('SADD', key, user)
local active = redis.call('HGET', p .. ':active', id)
if active then
  local ok, m = pcall(cjson.decode, active)
  if ok and type(m) == 'table' and type(m.expires_at) == 'number' then
    redis.call('PEXPIREAT', key, m.expires_at)
  end
elseif not existed or redis.call('PTTL', key) >= 0 and redis.call('PTTL', key) < lifetime then
  redis.call('PEXPIRE', key, lifetime)
end
local env = cjson.encode({op = 'retract', id = id, sid = ARGV[10]})
if history == '1' then
  local epoch, hid, ms = history_id(p, epoch_candidate)
  history_append(p, 'history:user:' .. user, hid, env, ms, window, hmax)
  env = with_pos(env, epoch, hid)
end
if caller_publishes then return env end
redis.call('PUBLISH', c .. ':user:' .. user, env)
return env
