-- release.lua: hand messages back at shutdown, claimable at once, without costing an attempt.
--
-- For each id still pending for this consumer (a message another worker reclaimed meanwhile
-- is left alone): XCLAIM it to ourselves with IDLE = the lease, so any live worker's reclaim
-- takes it now, and RETRYCOUNT one less, giving back the delivery that never ran.
--
-- KEYS[1]  input stream
-- ARGV[1]  group      ARGV[2]  consumer      ARGV[3]  the lease in ms
-- ARGV[4..] pairs of id, delivery count to set
-- Returns how many were handed back.

local stream, group, consumer, idle = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local released = 0
for i = 4, #ARGV, 2 do
  local id, count = ARGV[i], ARGV[i + 1]
  if #redis.call("XPENDING", stream, group, id, id, 1, consumer) == 1 then
    redis.call("XCLAIM", stream, group, consumer, 0, id, "IDLE", idle, "RETRYCOUNT", count, "JUSTID")
    released = released + 1
  end
end
return released
