-- renew.lua: the lease heartbeat; reset the idle time of the messages this consumer still holds.
--
-- XCLAIM ... JUSTID to ourselves does not count as a delivery. Only ids still pending for this
-- consumer are claimed: a message another worker reclaimed is never stolen back.
--
-- KEYS[1]  input stream
-- ARGV[1]  group                   ARGV[2]  consumer
-- ARGV[3..] the ids this consumer believes it holds
-- Returns the ids that are no longer ours (reclaimed by another worker, or already gone).

local stream, group, consumer = KEYS[1], ARGV[1], ARGV[2]
local mine, lost = {}, {}
for i = 3, #ARGV do
  local id = ARGV[i]
  if #redis.call("XPENDING", stream, group, id, id, 1, consumer) == 1 then
    mine[#mine + 1] = id
  else
    lost[#lost + 1] = id
  end
end
if #mine > 0 then
  mine[#mine + 1] = "JUSTID"  -- unpack() must come last in an argument list, or it yields one
  redis.call("XCLAIM", stream, group, consumer, 0, unpack(mine))
end
return lost
