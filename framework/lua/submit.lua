-- submit.lua: queue one job, at most once per job id, refusing when the first stage is full.
--
-- The caller chose the job id before its first attempt and sends the same call again while
-- the reply is lost: a job id that exists is never queued again, so a lost reply never makes a
-- second job. The existing job's `submitted` time comes back, so the caller can tell its own
-- earlier attempt (it sends the same time each attempt) from a job submitted before.
--
-- KEYS[1]  input stream            KEYS[2]  job hash ({name}:job:ID)
-- ARGV[1]  job id                  ARGV[2]  data (JSON)
-- ARGV[3]  trace ("" for none)     ARGV[4]  now in ms
-- ARGV[5]  result_ttl in seconds   ARGV[6]  max_backlog of the first stage, or "" for none
-- ARGV[7]  the first stage's group (to measure its backlog)
-- Returns {job_id, 1} when queued, {job_id, 0, submitted_ms} when that job id already exists,
-- or {"", backlog} when refused for backpressure.

local input, jobkey = KEYS[1], KEYS[2]
local job, data, trace, now, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])

if redis.call("EXISTS", jobkey) == 1 then
  return {job, 0, redis.call("HGET", jobkey, "submitted") or "0"}
end

if ARGV[6] ~= "" then
  local limit = tonumber(ARGV[6])
  local backlog = 0
  for _, info in ipairs(redis.call("XINFO", "GROUPS", input)) do
    local fields = {}
    for i = 1, #info, 2 do fields[info[i]] = info[i + 1] end
    if fields["name"] == ARGV[7] then
      local undelivered = fields["lag"]
      if type(undelivered) ~= "number" then
        -- Before Redis 7 (or when lag is unknown): count what follows the last delivered id.
        local ms, seq = string.match(fields["last-delivered-id"], "^(%d+)-(%d+)$")
        local next_id = ms .. "-" .. (tonumber(seq) + 1)
        local after = redis.call("XRANGE", input, next_id, "+", "COUNT", limit + 1)
        undelivered = #after
      end
      backlog = fields["pending"] + undelivered
    end
  end
  if backlog >= limit then return {"", backlog} end
end

if trace ~= "" then
  redis.call("XADD", input, "*", "job", job, "data", data, "trace", trace)
else
  redis.call("XADD", input, "*", "job", job, "data", data)
end
redis.call("HSET", jobkey, "state", "queued", "outstanding", 1, "submitted", now, "updated", now)
redis.call("EXPIRE", jobkey, ttl)
return {job, 1}
