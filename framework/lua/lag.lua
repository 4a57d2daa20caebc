-- lag.lua: how many entries of a stream a group has not been handed yet, counted in Redis so
-- that no entry (each holds a payload) travels to whoever asks (status, the dashboard).
--
-- Redis 7 keeps the count itself (XINFO GROUPS `lag`), but can go stale (7.0's entries-read
-- across an AOF reload): a lag with nothing after the last delivered entry is 0. Before 7.0
-- the entries after the last delivered one are counted, up to a cap.
--
-- KEYS[1]  stream
-- ARGV[1]  group        ARGV[2]  count no further than this
-- Returns {lag, exact (1 or 0)}, or {-1, 1} when the group does not exist.

local stream, group, cap = KEYS[1], ARGV[1], tonumber(ARGV[2])
for _, info in ipairs(redis.call("XINFO", "GROUPS", stream)) do
  local fields = {}
  for i = 1, #info, 2 do fields[info[i]] = info[i + 1] end
  if fields["name"] == group then
    local last = fields["last-delivered-id"]
    local ms, seq = string.match(last, "^(%d+)-(%d+)$")
    local after = ms .. "-" .. (tonumber(seq) + 1)
    local lag = fields["lag"]
    if type(lag) == "number" then
      if lag > 0 and #redis.call("XRANGE", stream, after, "+", "COUNT", 1) == 0 then lag = 0 end
      return {lag, 1}
    end
    if last == "0-0" then return {redis.call("XLEN", stream), 1} end
    local found = #redis.call("XRANGE", stream, after, "+", "COUNT", cap + 1)
    if found > cap then return {cap, 0} end
    return {found, 1}
  end
end
return {-1, 1}
