-- Up to `count` requests for the lease holder after entry `after` ('0': from the start),
-- oldest first: the entries pending with it (taken over, or not answered yet), then new
-- ones, in stream (arrival) order.
-- Returns {'empty'} or {'entries', id, n, field, value, ... (n of them), id, n, ...}.
local function next_entries(stream, group, consumer, count, after)
  local function entries(r)
    if r and r[1] and r[1][2] then return r[1][2] end
    return {}
  end
  count = tonumber(count)
  if count < 1 then return {'empty'} end
  local got = entries(redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', count,
    'STREAMS', stream, after))
  -- A pending entry comes back without fields once deleted: it was answered, skip it.
  local taken = {}
  for _, e in ipairs(got) do
    if e[2] then table.insert(taken, e) else redis.call('XACK', stream, group, e[1]) end
  end
  if #taken < count then
    local fresh = entries(redis.call('XREADGROUP', 'GROUP', group, consumer,
      'COUNT', count - #taken, 'STREAMS', stream, '>'))
    for _, e in ipairs(fresh) do table.insert(taken, e) end
  end
  if #taken == 0 then return {'empty'} end
  local out = {'entries'}
  for _, e in ipairs(taken) do
    table.insert(out, e[1])
    local fields = e[2] or {}
    table.insert(out, tostring(#fields))
    for _, v in ipairs(fields) do table.insert(out, v) end
  end
  return out
end
