-- submit.lua: queue one job, idempotently by job id, refusing when the first stage is full.
--
-- KEYS[1]  input stream            KEYS[2]  job hash ({name}:job:ID; ignored without a job id)
-- ARGV[1]  job id, or "" to use the entry id as the job id
-- ARGV[2]  data (JSON)             ARGV[3]  trace ("" for none)
-- ARGV[4]  now in ms               ARGV[5]  result_ttl in seconds
-- ARGV[6]  max_backlog of the first stage, or "" for none
-- ARGV[7]  the first stage's group (to measure its backlog)
-- ARGV[8]  job key prefix ({name}:job:) for jobs that take the entry id
-- Returns {job_id, 1} when queued, {job_id, 0} when that job id already exists,
-- or {"", backlog} when refused for backpressure.

local input, jobkey = KEYS[1], KEYS[2]
local job, data, trace, now, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])

if job ~= "" and redis.call("EXISTS", jobkey) == 1 then
  return {job, 0}
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

local fields = {"data", data}
if job ~= "" then fields = {"job", job, "data", data} end
if trace ~= "" then
  fields[#fields + 1] = "trace"
  fields[#fields + 1] = trace
end
local id = redis.call("XADD", input, "*", unpack(fields))
if job == "" then
  job = id
  jobkey = ARGV[8] .. id
end
redis.call("HSET", jobkey, "state", "queued", "outstanding", 1, "submitted", now, "updated", now)
redis.call("EXPIRE", jobkey, ttl)
return {job, 1}
