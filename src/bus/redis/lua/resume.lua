-- Reads what a resume needs in one atomic step: the epoch, then for the
-- broadcast history and the user's own, the newest id trimmed away and the
-- entries after `since` (id, envelope, id, envelope, …). One step, so no
-- publish lands between the two reads: every entry at or below the highest
-- id read is in the result or in a stream this session does not read, and
-- the live copies the session skips as covered were all replayed.
-- KEYS[1]: the prefix of Herald's own keys (hash-tagged in a cluster).
-- ARGV: user, since (a stream id).
local p, user, since = KEYS[1], ARGV[1], ARGV[2]
local out = {redis.call('GET', p .. ':epoch') or ''}
for _, name in ipairs({'history', 'history:user:' .. user}) do
  local key = p .. ':' .. name
  local entries = {}
  for _, entry in ipairs(redis.call('XRANGE', key, '(' .. since, '+')) do
    local fields = entry[2]
    for i = 1, #fields - 1, 2 do
      if fields[i] == 'e' then
        entries[#entries + 1] = entry[1]
        entries[#entries + 1] = fields[i + 1]
      end
    end
  end
  out[#out + 1] = redis.call('GET', p .. ':trimmed:' .. name) or ''
  out[#out + 1] = entries
end
return out
