-- release.lua: set the delivery count of messages this consumer holds, and their idle time.
--
-- Two uses, one rule (a delivery counts as an attempt only if its run started):
-- - hand back at shutdown what never ran: IDLE = the lease, so any live worker's reclaim takes
--   it at once, and the count one less, giving back the delivery that never ran;
-- - a reclaimed message's run starts: IDLE 0, and the count forward to this run (reclaim.lua
--   set it back when it claimed the message).
-- Only ids still pending for this consumer are touched: a message another worker reclaimed
-- meanwhile is never pulled back.
--
-- KEYS[1]  input stream
-- ARGV[1]  group      ARGV[2]  consumer      ARGV[3]  the idle time to set, in ms
-- ARGV[4..] pairs of id, delivery count to set
-- Returns the ids that were ours (and were set).

local stream, group, consumer, idle = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local set = {}
for i = 4, #ARGV, 2 do
  local id, count = ARGV[i], ARGV[i + 1]
  if #redis.call("XPENDING", stream, group, id, id, 1, consumer) == 1 then
    redis.call("XCLAIM", stream, group, consumer, 0, id, "IDLE", idle, "RETRYCOUNT", count, "JUSTID")
    set[#set + 1] = id
  end
end
return set
