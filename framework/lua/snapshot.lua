-- snapshot.lua: keep two readings of the stages' output counters, so that status can tell
-- outputs per second without reading a stream's entries (which hold the payloads).
--
-- The stats hash holds `out.STAGE` (outputs ever, counted by commit.lua); every `every_ms`
-- the current counters become `snap.out.STAGE` (at `snap.at`) and the reading before them
-- `prev.out.STAGE` (at `prev.at`). A rate then spans one to two periods. Any live worker
-- may call this; a call before the period is over changes nothing.
--
-- KEYS[1]  stats hash ({name}:stats)
-- ARGV[1]  now in ms               ARGV[2]  every_ms
-- Returns 1 when it took a reading, 0 when the last one is recent.

local stats, now = KEYS[1], tonumber(ARGV[1])
local at = tonumber(redis.call("HGET", stats, "snap.at") or "0")
if now - at < tonumber(ARGV[2]) and now >= at then return 0 end

local fields = redis.call("HGETALL", stats)
local update = {}
for i = 1, #fields, 2 do
  local name, value = fields[i], fields[i + 1]
  if string.sub(name, 1, 4) == "out." then
    update[#update + 1] = "snap." .. name
    update[#update + 1] = value
  elseif string.sub(name, 1, 9) == "snap.out." then
    update[#update + 1] = "prev." .. string.sub(name, 6)
    update[#update + 1] = value
  end
end
if at > 0 then
  update[#update + 1] = "prev.at"
  update[#update + 1] = tostring(at)
end
update[#update + 1] = "snap.at"
update[#update + 1] = ARGV[1]
redis.call("HSET", stats, unpack(update))
return 1
