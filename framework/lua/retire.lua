-- retire.lua: remove consumers that hold nothing, so XINFO CONSUMERS lists live workers only.
--
-- Every worker process has a consumer name of its own (HOSTNAME-PID-N), so without this the
-- list would grow by one at every restart. XGROUP DELCONSUMER drops a consumer's pending
-- entries with it, so a consumer is removed only when it has none: nothing can be lost.
--
-- KEYS[1]  stream
-- ARGV[1]  group
-- ARGV[2]  this worker's consumer, removed if it holds nothing ("" for none)
-- ARGV[3]  other consumers are removed when they hold nothing and have been idle this many ms
-- ARGV[4..] consumers whose process is known to be gone (this host, no such PID): removed when
--          they hold nothing, however recently they were seen
-- Returns the number of consumers removed.

local stream, group, me, idle = KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3])
local gone = {}
for i = 4, #ARGV do gone[ARGV[i]] = true end
local removed = 0
for _, info in ipairs(redis.call("XINFO", "CONSUMERS", stream, group)) do
  local fields = {}
  for i = 1, #info, 2 do fields[info[i]] = info[i + 1] end
  local name = fields["name"]
  if fields["pending"] == 0 and (name == me or gone[name] or fields["idle"] >= idle) then
    redis.call("XGROUP", "DELCONSUMER", stream, group, name)
    removed = removed + 1
  end
end
return removed
