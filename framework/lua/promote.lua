-- promote.lua: move due retries from the retry set back to the stage that failed them.
--
-- The entry goes back onto that stage's input stream with a `for` field naming the stage, so
-- the other groups reading the same stream skip it: it reaches that stage and no other.
--
-- KEYS[1]  retry zset ({name}:retry)  KEYS[2]  stats hash ({name}:stats: retry.STAGE counts)
-- ARGV[1]  now in ms               ARGV[2]  at most this many per call
-- Each member is JSON: {"stream", "stage", "job", "data", "trace", "attempt", "id"}.
-- Returns the number of retries promoted.

local due = redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", ARGV[1], "LIMIT", 0, tonumber(ARGV[2]))
local by_stage = {}
for _, member in ipairs(due) do
  local retry = cjson.decode(member)
  local fields = {"job", retry["job"], "data", retry["data"], "for", retry["stage"],
                  "attempt", tostring(retry["attempt"])}
  if retry["trace"] and retry["trace"] ~= "" then
    fields[#fields + 1] = "trace"
    fields[#fields + 1] = retry["trace"]
  end
  redis.call("XADD", retry["stream"], "*", unpack(fields))
  redis.call("ZREM", KEYS[1], member)
  by_stage[retry["stage"]] = (by_stage[retry["stage"]] or 0) + 1
end
for stage, count in pairs(by_stage) do
  redis.call("HINCRBY", KEYS[2], "retry." .. stage, -count)
end
return #due
