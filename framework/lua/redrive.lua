-- redrive.lua: send one dead letter back to the stage that dead-lettered it, in one atomic step.
--
-- The message goes back onto the stage's input stream with `for` naming the stage (the other
-- groups reading that stream skip it), `attempt` 0 (a fresh start) and `fanout` (its job may
-- have other messages in flight: it ends by the job's count, commit.lua); its job is reopened
-- and the dead entry deleted. XDEL comes first, as the guard: a dead letter re-driven twice at once
-- (two operators, or a call repeated after a lost reply) goes back only once.
--
-- KEYS[1]  dead stream ({name}:dead)
-- KEYS[2]  the stage's input stream
-- KEYS[3]  job hash ({name}:job:ID)
-- KEYS[4]  stats hash ({name}:stats: dead.STAGE counts)
-- ARGV[1]  dead entry id           ARGV[2]  stage name
-- ARGV[3]  job id                  ARGV[4]  data (JSON)
-- ARGV[5]  trace ("" for none)     ARGV[6]  now in ms
-- ARGV[7]  result_ttl in seconds
-- Returns 1 when re-driven, 0 when that dead entry no longer exists.

local dead, input, jobkey = KEYS[1], KEYS[2], KEYS[3]
if redis.call("XDEL", dead, ARGV[1]) == 0 then return 0 end
redis.call("HINCRBY", KEYS[4], "dead." .. ARGV[2], -1)

local fields = {"job", ARGV[3], "data", ARGV[4], "for", ARGV[2], "attempt", "0", "fanout", "1"}
if ARGV[5] ~= "" then
  fields[#fields + 1] = "trace"
  fields[#fields + 1] = ARGV[5]
end
redis.call("XADD", input, "*", unpack(fields))

-- An expired job hash is not recreated here: commit.lua starts it again when the message leaves.
if redis.call("EXISTS", jobkey) == 1 then
  redis.call("HINCRBY", jobkey, "outstanding", 1)
  if redis.call("HINCRBY", jobkey, "failed", -1) <= 0 then
    -- No other message of this job is still dead: the job is no longer failed (commit.lua
    -- reads a `failed` field as failure), and its error goes too.
    redis.call("HDEL", jobkey, "failed", "error")
  end
  redis.call("HSET", jobkey, "state", "running", "updated", ARGV[6])
  redis.call("HDEL", jobkey, "finished")
  redis.call("EXPIRE", jobkey, tonumber(ARGV[7]))
end
return 1
