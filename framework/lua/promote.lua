-- promote.lua: move due retries from the retry set back to the stage that failed them.
--
-- The entry goes back onto that stage's input stream with a `for` field naming the stage, so
-- the other groups reading the same stream skip it: it reaches that stage and no other.
--
-- KEYS[1]  retry zset ({name}:retry)  KEYS[2]  stats hash ({name}:stats: retry.STAGE counts)
-- ARGV[1]  now in ms               ARGV[2]  at most this many per call
-- Each member is a JSON header, a newline, then the payload as it came, never decoded here:
--   {"stream", "stage", "job", "trace", "attempt", "id", "error", "timings", "fanout"}\n<data>
-- (JSON text has no raw newline, so the first one ends the header.) A member written before
-- this form, one JSON document with the payload under "data", is read as well.
-- Returns the number of retries promoted.

local due = redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", ARGV[1], "LIMIT", 0, tonumber(ARGV[2]))
local by_stage = {}
for _, member in ipairs(due) do
  local header, data
  local newline = string.find(member, "\n", 1, true)
  if newline then
    header = cjson.decode(string.sub(member, 1, newline - 1))
    data = string.sub(member, newline + 1)
  else
    header = cjson.decode(member)
    data = header["data"]
  end
  local fields = {"job", header["job"], "data", data, "for", header["stage"],
                  "attempt", tostring(header["attempt"])}
  for _, name in ipairs({"trace", "timings", "fanout"}) do
    local extra = header[name]
    if type(extra) == "string" and extra ~= "" then
      fields[#fields + 1] = name
      fields[#fields + 1] = extra
    end
  end
  redis.call("XADD", header["stream"], "*", unpack(fields))
  redis.call("ZREM", KEYS[1], member)
  by_stage[header["stage"]] = (by_stage[header["stage"]] or 0) + 1
end
for stage, count in pairs(by_stage) do
  redis.call("HINCRBY", KEYS[2], "retry." .. stage, -count)
end
return #due
