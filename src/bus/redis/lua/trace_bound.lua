-- Keeps the user traces bounded in total: the users traced in a batch
-- enter an index by time; past the bound, the least recently traced users'
-- traces are deleted.
-- KEYS[1]: the prefix of Herald's keys. ARGV[1]: most users traced;
-- ARGV[2]: now (ms); ARGV[3..]: the users traced now.
local index = KEYS[1] .. ':traced'
for i = 3, #ARGV do
  redis.call('ZADD', index, ARGV[2], ARGV[i])
end
local over = redis.call('ZCARD', index) - tonumber(ARGV[1])
if over > 0 then
  local gone = redis.call('ZPOPMIN', index, over)
  for i = 1, #gone, 2 do
    redis.call('DEL', KEYS[1] .. ':trace:' .. gone[i])
  end
end
return over
