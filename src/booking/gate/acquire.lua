-- Claims every seat key (KEYS) for ARGV[1] for ARGV[2] ms, all or nothing.
-- Returns {0, ""} when claimed, else {i, owner}: KEYS[i] is claimed by owner.
for i, key in ipairs(KEYS) do
  local owner = redis.call('GET', key)
  if owner then return {i, owner} end
end
for i, key in ipairs(KEYS) do
  redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
end
return {0, ''}
