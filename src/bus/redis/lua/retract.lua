-- Retracts a message everywhere: out of the active set and every user's
-- pending set, acknowledgements forgotten, a short tombstone against late
-- writers, and the retract published to every node.
-- With history, the retraction is appended to the broadcast history too,
-- so a client resuming past it neither gets the message replayed nor keeps
-- it on screen, and the published retraction carries its position
-- (`"pos"`), so a resuming session drops the live copy of one it replayed.
-- KEYS[1]: the prefix of Herald's own keys (hash-tagged in a cluster).
-- ARGV: prefix of channels, id, retract frame envelope, tombstone seconds, history
--       ("0"|"1"), history window ms, history maxlen, an epoch candidate,
--       caller publishes ("0"|"1": in a Redis Cluster the caller PUBLISHes
--       the returned envelope on the broadcast channel's slot, as publish.lua's
--       "broadcast_stored" route, so a retraction never overtakes its message),
--       mode ("publish", or "store": a retraction that reached the nodes by
--       plain PUBLISH, stored by the first node to run this and by no other,
--       and published by none; returns 0 when it was already done).
local p, c = KEYS[1], ARGV[1]
local id, env, ttl = ARGV[2], ARGV[3], ARGV[4]
local store_only = ARGV[10] == 'store'
if store_only and redis.call('EXISTS', p .. ':retracted:' .. id) == 1 then return 0 end
if ARGV[5] == '1' then
  local epoch, hid, ms = history_id(p, ARGV[8])
  history_append(p, 'history', hid, env, ms, tonumber(ARGV[6]), ARGV[7])
  env = with_pos(env, epoch, hid)
end
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
if store_only then return 1 end
if ARGV[9] == '1' then return env end
return redis.call('PUBLISH', c .. ':broadcast', env)
