-- backlog.lua: a group's backlog (undelivered plus pending), for backpressure.
--
-- KEYS[1]  stream
-- ARGV[1]  group        ARGV[2]  count no further than this (the cap keeps it cheap before 7.0)
-- Returns the backlog, or -1 when the group does not exist yet.

local stream, group, cap = KEYS[1], ARGV[1], tonumber(ARGV[2])
for _, info in ipairs(redis.call("XINFO", "GROUPS", stream)) do
  local fields = {}
  for i = 1, #info, 2 do fields[info[i]] = info[i + 1] end
  if fields["name"] == group then
    local undelivered = fields["lag"]
    if type(undelivered) ~= "number" then
      local last = fields["last-delivered-id"]
      local ms, seq = string.match(last, "^(%d+)-(%d+)$")
      local after = redis.call("XRANGE", stream, ms .. "-" .. (tonumber(seq) + 1), "+", "COUNT", cap + 1)
      undelivered = #after
    end
    return fields["pending"] + undelivered
  end
end
return -1
