-- reclaim.lua: take over messages whose holder has been silent for at least the lease.
--
-- XAUTOCLAIM where the server has it (6.2+), else XPENDING + XCLAIM (Redis 6.0, as on Azure
-- Cache for Redis Basic/Standard/Premium). Each claimed message comes back with its delivery
-- count, so the worker can count attempts that never finished.
--
-- The claim itself is not counted: the count is set back by one here, and the worker sets it
-- forward (release.lua) when the message's run starts. So a message that was only held, not
-- run, when its worker died (one read with a message that kills every worker) costs no
-- attempt however often that happens; a run that kills its worker costs one.
--
-- KEYS[1]  input stream
-- ARGV[1]  group       ARGV[2]  consumer      ARGV[3]  min idle in ms
-- ARGV[4]  cursor      ARGV[5]  count         ARGV[6]  "1" to use XAUTOCLAIM
-- Returns {next_cursor, {id, deliveries, fields}...}; ids whose entry is gone are acked and
-- left out (they cannot be run: safe trimming never removes a pending entry, so this only
-- happens when someone else deleted it).

local stream, group, consumer = KEYS[1], ARGV[1], ARGV[2]
local min_idle, cursor, count = ARGV[3], ARGV[4], tonumber(ARGV[5])
local claimed, next_cursor = {}, "0-0"

if ARGV[6] == "1" then
  local reply = redis.call("XAUTOCLAIM", stream, group, consumer, min_idle, cursor, "COUNT", count)
  next_cursor = reply[1]
  claimed = reply[2]
  for _, id in ipairs(reply[3] or {}) do redis.call("XACK", stream, group, id) end
else
  local ids = {}
  for _, p in ipairs(redis.call("XPENDING", stream, group, "-", "+", count * 10)) do
    if p[3] >= tonumber(min_idle) and #ids < count then ids[#ids + 1] = p[1] end
  end
  if #ids > 0 then
    claimed = redis.call("XCLAIM", stream, group, consumer, min_idle, unpack(ids))
  end
end

local result = {next_cursor}
for _, entry in ipairs(claimed) do
  local id, fields = entry[1], entry[2]
  if type(fields) ~= "table" then
    redis.call("XACK", stream, group, id)
  else
    local p = redis.call("XPENDING", stream, group, id, id, 1)
    local deliveries = 1
    if #p == 1 then deliveries = p[1][4] end
    redis.call("XCLAIM", stream, group, consumer, 0, id, "RETRYCOUNT", deliveries - 1, "JUSTID")
    result[#result + 1] = {id, deliveries, fields}
  end
end
return result
