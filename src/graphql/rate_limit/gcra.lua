-- One request against a GCRA bucket (the generic cell rate algorithm: a token bucket kept as
-- one number, the "theoretical arrival time" of the next request).
-- KEYS[1]: the bucket. ARGV[1]: emission interval in ms (the period divided by the rate),
-- ARGV[2]: burst (requests allowed at once from a full bucket).
-- Returns {1, 0} when the request may go, {0, ms until it may} when it may not.
-- Redis's clock, so every instance counts on the same one.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local interval = tonumber(ARGV[1])
local tolerance = interval * (tonumber(ARGV[2]) - 1)
local tat = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if tat < now then
  tat = now
end
local allow_at = tat - tolerance
if now < allow_at then
  return {0, math.ceil(allow_at - now)}
end
local next_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.3f', next_tat), 'PX', math.ceil(next_tat - now) + 1)
return {1, 0}
