-- Retracts a message everywhere: out of the active set and every user's
-- pending set, acknowledgements forgotten, a short tombstone against late
-- writers, and the retract published to every node.
-- ARGV: prefix, id, retract frame envelope, tombstone seconds.
local p, id, env, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local stored = redis.call('HGET', p .. ':active', id)
if stored then
  local ok, m = pcall(cjson.decode, stored)
  if ok and type(m) == 'table' and type(m.collapse_key) == 'string' then
    if redis.call('HGET', p .. ':collapse', m.collapse_key) == id then
      redis.call('HDEL', p .. ':collapse', m.collapse_key)
    end
  end
  redis.call('HDEL', p .. ':active', id)
end
local users_key = p .. ':msgusers:' .. id
for _, u in ipairs(redis.call('SMEMBERS', users_key)) do
  redis.call('HDEL', p .. ':pending:' .. u, id)
end
redis.call('DEL', users_key, p .. ':acked:' .. id)
redis.call('SET', p .. ':retracted:' .. id, '1', 'EX', ttl)
return redis.call('PUBLISH', p .. ':broadcast', env)
