-- A user clicked or dismissed a message: a must-acknowledge message stops
-- being sent on their next connects.
-- KEYS[1]: the prefix of Herald's own keys. ARGV: id, user.
local p, id, user = KEYS[1], ARGV[1], ARGV[2]
local pending = p .. ':pending:' .. user
local stored = redis.call('HGET', pending, id)
if stored then
  local ok, m = pcall(cjson.decode, stored)
  if ok and type(m) == 'table' and m.require_ack == true then redis.call('HDEL', pending, id) end
end
local active = redis.call('HGET', p .. ':active', id)
if active then
  local ok, m = pcall(cjson.decode, active)
  if ok and type(m) == 'table' and m.require_ack == true then
    local key = p .. ':acked:' .. id
    redis.call('SADD', key, user)
    if type(m.expires_at) == 'number' then
      redis.call('PEXPIREAT', key, m.expires_at)
    else
      redis.call('EXPIRE', key, 2592000)
    end
  end
end
return 1
