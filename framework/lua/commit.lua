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
-- Job hashes are {name}:job:ID, built here from ARGV[8]: they share the pipeline's hash tag,
-- so they live in the same cluster slot as KEYS[1..5] (one key per message would cost more to
-- send than the rest of the commit).
--
-- ARGV[1]  group                   ARGV[5]  fan: groups reading the output (0: last stage)
-- ARGV[2]  consumer                ARGV[6]  result_ttl in seconds
-- ARGV[3]  now in ms               ARGV[7]  "1" when the input is a source (jobs may be new)
-- ARGV[4]  stage name              ARGV[8]  job key prefix, {name}:job:
-- ARGV[9], ARGV[10]  the lowest and highest message id of the batch (for the ownership query)
-- ARGV[11] the batch, JSON: [[id, job, kind, trace, attempt, elapsed_ms, [args...]], ...]
--   kind E (emit): args are the output payloads     kind D (drop): no args
--   kind R (retry): due_ms, zset member            kind X (dead): data, error, traceback
--   kind S (skip: a retry meant for another stage): no args, no job accounting
-- Returns one status per message: 1 committed, 0 not ours any more.

local input, output, dead, retry, done = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local group, consumer, now, stage = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local fan, ttl, source, prefix = tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7] == "1", ARGV[8]
local batch = cjson.decode(ARGV[11])
local call = redis.call
local none = {}
local at_field, ms_field = stage .. ".at", stage .. ".ms"

-- Ownership: what is still pending for this consumer in the batch's span of ids, in one query
-- (a worker may hold many more messages than it commits at once: the span keeps this small).
local mine = {}
for _, entry in ipairs(call("XPENDING", input, group, ARGV[9], ARGV[10], 1000000, consumer)) do
  mine[entry[1]] = true
end

-- Time this stage let go of the job's message (and, at the last stage, its result, under
-- `result.<message id>`: unique, so no counter is needed); on a source stage also the job's
-- start: HSET answers how many fields are new, and an existing job hash always has `state`.
local function touch(jobkey, job, id, elapsed, extra)
  if not source and extra == none then  -- the common case, without building a table
    call("HSET", jobkey, at_field, now, ms_field, elapsed)
    return
  end
  local fields = {at_field, now, ms_field, elapsed}
  for _, value in ipairs(extra) do fields[#fields + 1] = value end
  if not source then
    call("HSET", jobkey, unpack(fields))
    return
  end
  fields[#fields + 1] = "state"
  fields[#fields + 1] = "running"
  if job == id then
    -- An entry that names no job is its own job, and this is its one exit from the source
    -- stage (a retry comes back as a new entry naming it): the job hash starts here, in one go.
    fields[#fields + 1] = "outstanding"
    fields[#fields + 1] = 1
    fields[#fields + 1] = "submitted"
    fields[#fields + 1] = string.match(id, "^(%d+)")
    call("HSET", jobkey, unpack(fields))
    call("EXPIRE", jobkey, ttl)
    return
  end
  local added = call("HSET", jobkey, unpack(fields))
  if added == #fields / 2 then
    -- A job named by an entry but never submitted through us, or whose hash expired: it
    -- starts here.
    call("HSET", jobkey, "outstanding", 1, "submitted", now)
    call("EXPIRE", jobkey, ttl)
  end
end

local function finish(jobkey, job)
  local state = "done"
  if call("HEXISTS", jobkey, "failed") == 1 then state = "failed" end
  call("HSET", jobkey, "state", state, "finished", now, "outstanding", 0)
  call("EXPIRE", jobkey, ttl)
  call("XADD", done, "*", "job", job, "state", state)
end

-- One message left this stage and `spawned` entered the next stages.
local function settle(jobkey, job, spawned)
  if spawned == 1 then return end
  if call("HINCRBY", jobkey, "outstanding", spawned - 1) <= 0 then finish(jobkey, job) end
end

local function results(id, payloads)
  local fields = {}
  for n, payload in ipairs(payloads) do
    fields[#fields + 1] = "result." .. id .. "." .. n
    fields[#fields + 1] = payload
  end
  return fields
end

-- The last stage's common case in fewer calls: timing, results and (when this was the job's
-- last message) its end, in one HSET.
local function last_stage_done(jobkey, job, id, elapsed, payloads)
  local fields = results(id, payloads)
  fields[#fields + 1] = at_field
  fields[#fields + 1] = now
  fields[#fields + 1] = ms_field
  fields[#fields + 1] = elapsed
  if call("HINCRBY", jobkey, "outstanding", -1) > 0 then
    call("HSET", jobkey, unpack(fields))
    return
  end
  local state = "done"
  if call("HEXISTS", jobkey, "failed") == 1 then state = "failed" end
  fields[#fields + 1] = "state"
  fields[#fields + 1] = state
  fields[#fields + 1] = "finished"
  fields[#fields + 1] = now
  fields[#fields + 1] = "outstanding"
  fields[#fields + 1] = 0
  call("HSET", jobkey, unpack(fields))
  call("EXPIRE", jobkey, ttl)
  call("XADD", done, "*", "job", job, "state", state)
end

local statuses, acked = {}, {}
for n, message in ipairs(batch) do
  local id, job, kind, trace, attempt, elapsed, args =
    message[1], message[2], message[3], message[4], message[5], message[6], message[7]
  local jobkey = prefix .. job
  if not mine[id] then
    statuses[n] = 0
  else
    mine[id] = nil  -- the same id twice in one batch commits once
    statuses[n] = 1
    acked[#acked + 1] = id
    if kind == "E" then
      for _, payload in ipairs(args) do
        if trace ~= "" then
          call("XADD", output, "*", "job", job, "data", payload, "trace", trace)
        else
          call("XADD", output, "*", "job", job, "data", payload)
        end
      end
      if fan == 0 and not source then
        last_stage_done(jobkey, job, id, elapsed, args)
      elseif fan == 0 then
        touch(jobkey, job, id, elapsed, results(id, args))
        settle(jobkey, job, 0)
      else
        touch(jobkey, job, id, elapsed, none)
        settle(jobkey, job, #args * fan)
      end
    elseif kind == "D" then
      touch(jobkey, job, id, elapsed, none)
      settle(jobkey, job, 0)
    elseif kind == "R" then
      call("ZADD", retry, args[1], args[2])
      touch(jobkey, job, id, elapsed, none)
    elseif kind == "X" then
      call("XADD", dead, "*", "stage", stage, "job", job, "id", id, "stream", input,
        "data", args[1], "error", args[2], "traceback", args[3],
        "attempts", attempt, "trace", trace, "failed_at", now)
      touch(jobkey, job, id, elapsed, none)
      call("HINCRBY", jobkey, "failed", 1)
      call("HSET", jobkey, "error", stage .. ": " .. args[2])
      settle(jobkey, job, 0)
    end
  end
end
if #acked > 0 then call("XACK", input, group, unpack(acked)) end
return statuses
