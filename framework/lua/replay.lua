-- replay.lua: queue one entry of a stage's history again, for that stage only, in one atomic step.
--
-- The entry goes back onto the stage's input stream with `for` naming the stage (the other
-- groups reading that stream skip it), `attempt` 0 (a fresh start) and `fanout` (its job may
-- have other messages in flight: it ends by the job's count, commit.lua); its job, if its hash
-- is still there, is reopened: one more message outstanding, running again, no longer finished.
--
-- KEYS[1]  the stage's input stream
-- KEYS[2]  job hash ({name}:job:ID)
-- ARGV[1]  job id                  ARGV[2]  data (JSON)
-- ARGV[3]  stage name              ARGV[4]  trace ("" for none)
-- ARGV[5]  now in ms               ARGV[6]  result_ttl in seconds
-- ARGV[7]  timings of the stages before ("" for none)
-- Returns the new entry's id.

local input, jobkey = KEYS[1], KEYS[2]

local fields = {"job", ARGV[1], "data", ARGV[2], "for", ARGV[3], "attempt", "0", "fanout", "1"}
if ARGV[4] ~= "" then
  fields[#fields + 1] = "trace"
  fields[#fields + 1] = ARGV[4]
end
if ARGV[7] ~= "" then
  fields[#fields + 1] = "timings"
  fields[#fields + 1] = ARGV[7]
end
local id = redis.call("XADD", input, "*", unpack(fields))

-- An expired job hash is not recreated here: commit.lua starts it again when the message leaves.
if redis.call("EXISTS", jobkey) == 1 then
  redis.call("HINCRBY", jobkey, "outstanding", 1)
  redis.call("HSET", jobkey, "state", "running", "updated", ARGV[5])
  redis.call("HDEL", jobkey, "finished")
  redis.call("EXPIRE", jobkey, tonumber(ARGV[6]))
end
return id
