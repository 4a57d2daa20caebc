-- reclaim.lua: take over messages whose holder has been silent for at least the lease.
--
-- XAUTOCLAIM where the server has it (6.2+), else XPENDING + XCLAIM (Redis 6.0, as on Azure
-- Cache for Redis Basic/Standard/Premium); both with JUSTID, which claims without counting a
-- delivery. A message's delivery count is thus the runs that started: the worker counts one
-- when it starts the run (release.lua), so a message that was only held, not run, when its
-- worker died (read with one that kills every worker) costs no attempt however often that
-- happens. The one delivery counted unseen is the first, by XREADGROUP.
--
-- KEYS[1]  input stream
-- ARGV[1]  group       ARGV[2]  consumer      ARGV[3]  min idle in ms
-- ARGV[4]  cursor      ARGV[5]  count         ARGV[6]  "1" to use XAUTOCLAIM
-- Returns {next_cursor, {id, run, fields}...}, `run` the number the next run will have; ids
-- whose entry is gone are acked and left out (they cannot be run: safe trimming never removes
-- a pending entry, so this only happens when someone else deleted it).

local stream, group, consumer = KEYS[1], ARGV[1], ARGV[2]
local min_idle, cursor, count = ARGV[3], ARGV[4], tonumber(ARGV[5])
local ids, next_cursor = {}, "0-0"

if ARGV[6] == "1" then
  local reply = redis.call(
    "XAUTOCLAIM", stream, group, consumer, min_idle, cursor, "COUNT", count, "JUSTID")
  next_cursor = reply[1]
  ids = reply[2]
  for _, id in ipairs(reply[3] or {}) do redis.call("XACK", stream, group, id) end  -- 7.0+
else
  local idle = {}
  for _, p in ipairs(redis.call("XPENDING", stream, group, "-", "+", count * 10)) do
    if p[3] >= tonumber(min_idle) and #idle < count then idle[#idle + 1] = p[1] end
  end
  if #idle > 0 then
    idle[#idle + 1] = "JUSTID"  -- unpack() must come last in an argument list
    ids = redis.call("XCLAIM", stream, group, consumer, min_idle, unpack(idle))
  end
end

local result = {next_cursor}
for _, id in ipairs(ids) do
  local entry = redis.call("XRANGE", stream, id, id)
  if #entry == 0 then
    redis.call("XACK", stream, group, id)  -- deleted (6.x claims those too)
  else
    local p = redis.call("XPENDING", stream, group, id, id, 1)
    local runs = 0
    if #p == 1 then runs = p[1][4] end
    result[#result + 1] = {id, runs + 1, entry[1][2]}
  end
end
return result
