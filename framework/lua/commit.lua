-- commit.lua: the exit of a batch of messages from a stage's pending list, in one atomic step.
--
-- For each message: check that this consumer still owns it (it is in our pending list), then
-- write its outputs, or its dead letter, or its delayed retry, XACK it and update its job hash.
-- A message we no longer own (reclaimed by another worker) is left alone: its late result is
-- dropped. Repeating the call after a lost reply is safe: committed messages are no longer ours.
--
-- KEYS[1]  input stream            the stream the stage reads
-- KEYS[2]  output stream           {name}:STAGE
-- KEYS[3]  dead stream             {name}:dead
-- KEYS[4]  retry zset              {name}:retry
-- KEYS[5]  done stream             {name}:done
-- KEYS[6..] job hash of each message, in message order
--
-- ARGV[1]  group                   ARGV[5]  fan: groups reading the output (0: last stage)
-- ARGV[2]  consumer                ARGV[6]  result_ttl in seconds
-- ARGV[3]  now in ms               ARGV[7]  "1" when the input is a source (jobs may be new)
-- ARGV[4]  stage name              ARGV[8]  number of messages
-- then per message: id, job, kind, trace, attempt, elapsed_ms, nargs, args...
--   kind E (emit): args are the output payloads     kind D (drop): no args
--   kind R (retry): due_ms, zset member            kind X (dead): data, error, traceback
--   kind S (skip: a retry meant for another stage): no args, no job accounting
-- Returns one status per message: 1 committed, 0 not ours any more.

local input, output, dead, retry, done = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local group, consumer, now, stage = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local fan, ttl, source, count = tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7] == "1", tonumber(ARGV[8])

local function owned(id)
  local entry = redis.call("XPENDING", input, group, id, id, 1, consumer)
  return #entry == 1
end

local function append_results(jobkey, payloads, first, last)
  local parts = {}
  for i = first, last do parts[#parts + 1] = payloads[i] end
  if #parts == 0 then return end
  local joined = table.concat(parts, ",")
  local previous = redis.call("HGET", jobkey, "result")
  if previous and previous ~= "[]" then
    redis.call("HSET", jobkey, "result", string.sub(previous, 1, -2) .. "," .. joined .. "]")
  else
    redis.call("HSET", jobkey, "result", "[" .. joined .. "]")
  end
  redis.call("HINCRBY", jobkey, "results", #parts)
end

-- A bare entry (or a job whose hash expired) has no job hash yet: the job starts here.
local function ensure_job(jobkey, job, id)
  if redis.call("EXISTS", jobkey) == 1 then return end
  local submitted = now
  if source and job == id then submitted = string.match(id, "^(%d+)") end
  redis.call("HSET", jobkey, "state", "running", "outstanding", 1, "submitted", submitted)
end

-- Account for one message leaving this stage: `spawned` messages enter the next stages.
local function settle(jobkey, job, id, spawned, elapsed)
  ensure_job(jobkey, job, id)
  local outstanding = redis.call("HINCRBY", jobkey, "outstanding", spawned - 1)
  redis.call("HSET", jobkey, "updated", now, stage .. ".at", now)
  redis.call("HINCRBY", jobkey, stage .. ".ms", elapsed)
  redis.call("HINCRBY", jobkey, stage .. ".n", 1)
  if outstanding <= 0 then
    local failed = tonumber(redis.call("HGET", jobkey, "failed") or "0")
    local state = "done"
    if failed > 0 then state = "failed" end
    redis.call("HSET", jobkey, "state", state, "finished", now, "outstanding", 0)
    redis.call("XADD", done, "*", "job", job, "state", state)
  elseif redis.call("HGET", jobkey, "state") == "queued" then
    redis.call("HSET", jobkey, "state", "running")
  end
  redis.call("EXPIRE", jobkey, ttl)
end

local statuses = {}
local pos = 9
for n = 1, count do
  local id, job, kind, trace = ARGV[pos], ARGV[pos + 1], ARGV[pos + 2], ARGV[pos + 3]
  local attempt, elapsed, nargs = ARGV[pos + 4], tonumber(ARGV[pos + 5]), tonumber(ARGV[pos + 6])
  local first, last = pos + 7, pos + 6 + nargs
  pos = last + 1
  local jobkey = KEYS[5 + n]
  if not owned(id) then
    statuses[n] = 0
  else
    statuses[n] = 1
    if kind == "E" then
      for i = first, last do
        if trace ~= "" then
          redis.call("XADD", output, "*", "job", job, "data", ARGV[i], "trace", trace)
        else
          redis.call("XADD", output, "*", "job", job, "data", ARGV[i])
        end
      end
      if fan == 0 then
        append_results(jobkey, ARGV, first, last)
        settle(jobkey, job, id, 0, elapsed)
      else
        settle(jobkey, job, id, nargs * fan, elapsed)
      end
    elseif kind == "D" then
      settle(jobkey, job, id, 0, elapsed)
    elseif kind == "R" then
      redis.call("ZADD", retry, ARGV[first], ARGV[first + 1])
      ensure_job(jobkey, job, id)
      redis.call("HSET", jobkey, "updated", now)
      redis.call("EXPIRE", jobkey, ttl)
    elseif kind == "X" then
      redis.call("XADD", dead, "*", "stage", stage, "job", job, "id", id, "stream", input,
        "data", ARGV[first], "error", ARGV[first + 1], "traceback", ARGV[first + 2],
        "attempts", attempt, "trace", trace, "failed_at", now)
      ensure_job(jobkey, job, id)
      redis.call("HINCRBY", jobkey, "failed", 1)
      redis.call("HSET", jobkey, "error", stage .. ": " .. ARGV[first + 1])
      settle(jobkey, job, id, 0, elapsed)
    end
    redis.call("XACK", input, group, id)
  end
end
return statuses
