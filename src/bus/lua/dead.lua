-- Records a refused envelope once, however many nodes received it.
-- ARGV: prefix, digest of the payload, maxlen, then field/value pairs.
local p, digest, maxlen = ARGV[1], ARGV[2], ARGV[3]
if redis.call('SET', p .. ':dead:seen:' .. digest, '1', 'NX', 'EX', 60) then
  local args = {p .. ':dead', 'MAXLEN', '~', maxlen, '*'}
  for i = 4, #ARGV do args[#args + 1] = ARGV[i] end
  redis.call('XADD', unpack(args))
  return 1
end
return 0
