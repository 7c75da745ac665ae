-- Shared by publish.lua and retract.lua (prepended to both).

-- The history's epoch and the next id: the time, never going back, and a
-- counter shared by every history stream, so positions from different
-- streams compare.
local function history_id(p, epoch_candidate)
  local epoch = redis.call('GET', p .. ':epoch')
  if not epoch then
    redis.call('SET', p .. ':epoch', epoch_candidate)
    epoch = epoch_candidate
  end
  local t = redis.call('TIME')
  local ms = t[1] * 1000 + math.floor(t[2] / 1000)
  local last = tonumber(redis.call('GET', p .. ':history:lastms') or '0')
  if ms < last then ms = last end
  redis.call('SET', p .. ':history:lastms', ms)
  return epoch, ms .. '-' .. redis.call('INCR', p .. ':history:seq'), ms
end

-- An envelope (a JSON object's text) with its position added, as published.
local function with_pos(env, epoch, hid)
  return string.sub(env, 1, -2) .. ',"pos":"' .. epoch .. '.' .. hid .. '"}'
end

-- Appends to one history stream, `{p}:{name}`. Trimming (to hmax entries
-- and to the window) is exact, and the newest id trimmed away is kept in
-- `{p}:trimmed:{name}`, so a resume can tell a gap from a quiet stream.
-- (A marker named after its stream with a suffix would be another user's
-- stream: the history of user `x:trimmed` was the marker of user `x`.)
local function history_append(p, name, hid, env, ms, window, hmax)
  local key, marker = p .. ':' .. name, p .. ':trimmed:' .. name
  local cutoff = (ms - window) .. '-0'
  redis.call('XADD', key, hid, 'e', env)
  local trimmed = false
  local len = redis.call('XLEN', key)
  if len > tonumber(hmax) then
    local over = redis.call('XRANGE', key, '-', '+', 'COUNT', len - tonumber(hmax))
    trimmed = over[#over][1]
    redis.call('XTRIM', key, 'MAXLEN', hmax)
  end
  local old = redis.call('XREVRANGE', key, '(' .. cutoff, '-', 'COUNT', 1)
  if #old > 0 then
    trimmed = old[1][1]
    redis.call('XTRIM', key, 'MINID', cutoff)
  end
  if trimmed then redis.call('SET', marker, trimmed) end
  redis.call('PEXPIRE', key, window + 60000)
  if redis.call('EXISTS', marker) == 1 then
    redis.call('PEXPIRE', marker, window + 60000)
  end
end
