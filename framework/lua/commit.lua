-- commit.lua: the exit of a batch of messages from a stage's pending list, in one atomic step.
--
-- For each message: check that this consumer still owns it (it is in our pending list), then
-- write its outputs, or its dead letter, or its delayed retry, XACK it and account for its job.
-- A message we no longer own (reclaimed by another worker) is left alone: its late result is
-- dropped. Repeating the call after a lost reply is safe: committed messages are no longer ours.
-- A repeated call (ARGV[12]) also says which of those it committed itself the first time, so a
-- lost reply is not reported as lost work: every call leaves its `now` (and the ids it found
-- lost, if any) in the stats hash under this consumer's name, and a repeat with the same `now`
-- finds it there if the first call ran: what that call did not find lost, it committed.
--
-- Payloads are only stored: they reach XADD as the arguments they came in, never decoded.
--
-- Job accounting, in few calls per message. A message carries the per-stage timings of its path
-- (`timings`: "stage,at_ms,ms;..."), written to the job hash as `STAGE.at`/`STAGE.ms` when the
-- job ends, not at every stage. A job has one message in flight until a stage emits several
-- outputs, or several stages read one (branching); from then on its messages carry `fanout` and
-- only they touch the `outstanding` counter. So a job that never fans out is written when it is
-- submitted, when its first stage takes it (`state` running) and when it ends.
-- The last stage's outputs are the job's results: the hash holds each one's entry id in the
-- output stream (`result.STAGE.MESSAGE_ID.N`), so a result is stored once.
--
-- KEYS[1]  input stream            the stream the stage reads
-- KEYS[2]  output stream           {name}:STAGE
-- KEYS[3]  dead stream             {name}:dead
-- KEYS[4]  retry zset              {name}:retry
-- KEYS[5]  done stream             {name}:done
-- KEYS[6]  stats hash              {name}:stats: outputs, dead letters and waiting retries
--                                  counted by stage (status reads no payload), commit markers
-- Job hashes are {name}:job:ID, built here from ARGV[8]: they share the pipeline's hash tag,
-- so they live in the same cluster slot as KEYS[1..6].
--
-- ARGV[1]  group                   ARGV[5]  fan: groups reading the output (0: last stage)
-- ARGV[2]  consumer                ARGV[6]  result_ttl in seconds
-- ARGV[3]  now in ms               ARGV[7]  "1" when the input is a source (jobs may be new)
-- ARGV[4]  stage name              ARGV[8]  job key prefix, {name}:job:
-- ARGV[9], ARGV[10]  the lowest and highest message id of the batch (for the ownership query)
-- ARGV[11] n, the number of messages
-- ARGV[12] "1" when this call repeats one whose reply was lost, else "0"
-- ARGV[13..18] how the columns below come, one header each, in this order: jobs, kinds,
--   counts, timings, traces, fanouts. "*": a column of n values follows; "=X": every message
--   has X (so the column is left out); for jobs also "@": every message is its own job.
-- ARGV[19..] the id column (n values), then each column whose header is "*", then the
--   arguments of every message in turn, `count` of them:
--   kind E (emit): the output payloads            kind D (drop): none
--   kind R (retry): due_ms, zset member           kind X (dead): data, error, traceback, attempts
--   kind S (skip: a retry meant for another stage): none, and no job accounting
-- Returns {lost, committed_before}: ids of messages that are not ours any more (taken over by
-- another consumer: their results are dropped), and, in a repeated call, ids that the call
-- whose reply was lost committed. {{}, {}} when every message was committed.
--
-- Cost matters here (each redis.call costs about as much as the command it runs): numbers go
-- as strings (a Lua number turned into a command argument goes through sprintf).

local input, output, dead, retry, done, stats = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local group, consumer, now, stage = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local fan, ttl, source, prefix = tonumber(ARGV[5]), ARGV[6], ARGV[7] == "1", ARGV[8]
local n, repeated = tonumber(ARGV[11]), ARGV[12] == "1"
local call = redis.call
local marker = "commit." .. consumer
local result_field = "result." .. stage .. "."

-- Columns: where each starts (values at start + 1 .. start + n), or the one value of all.
local ids = 18
local next_column = ids + n
local function column(header)
  if header == "*" then
    local start = next_column
    next_column = next_column + n
    return start, nil
  end
  return nil, string.sub(header, 2)
end
local jobs_at, job_all = column(ARGV[13])
local kinds_at, kind_all = column(ARGV[14])
local counts_at, count_all = column(ARGV[15])
local timings_at, timing_all = column(ARGV[16])
local traces_at, trace_all = column(ARGV[17])
local fanouts_at, fanout_all = column(ARGV[18])
local own_jobs = ARGV[13] == "@"

-- Ownership: what is still pending for this consumer in the batch's span of ids, in one query.
-- mine[id]: true while ours, false once committed here (the same id twice commits once).
local mine = {}
for _, entry in ipairs(call("XPENDING", input, group, ARGV[9], ARGV[10], 1000000, consumer)) do
  mine[entry[1]] = true
end
local first_call_ran, lost_then = false, {}
if repeated then
  local previous = call("HGET", stats, marker)
  if previous == now then
    first_call_ran = true
  elseif previous and string.sub(previous, 1, #now + 1) == now .. ":" then
    first_call_ran = true
    for id in string.gmatch(string.sub(previous, #now + 2), "[^,]+") do lost_then[id] = true end
  end
end

-- `STAGE.at`, `STAGE.ms` pairs from a message's timings, appended to `fields`.
local function add_timings(fields, timings)
  for name, at, ms in string.gmatch(timings, "([^,;]+),(%d+),(%d+)") do
    fields[#fields + 1] = name .. ".at"
    fields[#fields + 1] = at
    fields[#fields + 1] = name .. ".ms"
    fields[#fields + 1] = ms
  end
  return fields
end

-- A job whose id is an entry id may have no hash yet (a bare entry's): when its hash is
-- written, it is said when it was submitted, the entry id's time.
local function submitted_of(job, fields)
  local ms = string.match(job, "^(%d+)%-%d+$")
  if ms then
    fields[#fields + 1] = "submitted"
    fields[#fields + 1] = ms
  end
  return fields
end

-- The job is over: its state, once every message it spawned has left.
local function finish(jobkey, job, state, fields)
  submitted_of(job, fields)
  fields[#fields + 1] = "state"
  fields[#fields + 1] = state
  fields[#fields + 1] = "finished"
  fields[#fields + 1] = now
  fields[#fields + 1] = "outstanding"
  fields[#fields + 1] = "0"
  call("HSET", jobkey, unpack(fields))
  call("EXPIRE", jobkey, ttl)
  call("XADD", done, "*", "job", job, "state", state)
end

-- A fanned-out job's message left the stage, and `spawned` entered the next ones: write
-- `fields` (timings, results, the error), count it out, and end the job with its last one.
local function settle(jobkey, job, spawned, fields)
  if spawned == 1 then
    if #fields > 0 then call("HSET", jobkey, unpack(fields)) end
    return
  end
  local state = call("HMGET", jobkey, "outstanding", "failed")
  local left = (tonumber(state[1]) or 1) - 1 + spawned  -- no hash (expired): its one message
  if left > 0 then
    fields[#fields + 1] = "outstanding"
    fields[#fields + 1] = tostring(left)
    call("HSET", jobkey, unpack(fields))
    return
  end
  finish(jobkey, job, state[2] and "failed" or "done", fields)
end

-- The job of a message a source stage took: running now; started here if no one submitted it
-- (a `job` field with no hash: HSET answers 1 for a field that is new, and a submitted job's
-- hash always has `state`). An entry that names no job (a bare XADD) is its own job, whose
-- hash is written only when it ends or fans out: until then `status` finds its entry queued.
local function start(jobkey, job, id)
  if job == id then return end
  if call("HSET", jobkey, "state", "running") == 1 then
    call("HSET", jobkey, "outstanding", "1", "submitted", now)
    call("EXPIRE", jobkey, ttl)
  end
end


-- The outputs of one message, and its job's accounting (results at the last stage).
local function emit(jobkey, job, id, first, count, timings, fanned, trace)
  local spawned = count * fan
  local out = {"job", job, "data", "", "timings", timings}
  if trace ~= "" then
    out[#out + 1] = "trace"
    out[#out + 1] = trace
  end
  if fanned or spawned > 1 then
    out[#out + 1] = "fanout"
    out[#out + 1] = "1"
  end
  local fields = {}
  for k = 0, count - 1 do
    out[4] = ARGV[first + k]
    local entry = call("XADD", output, "*", unpack(out))
    if fan == 0 then
      fields[#fields + 1] = result_field .. id .. "." .. (k + 1)
      fields[#fields + 1] = entry
    end
  end
  if fan == 0 then add_timings(fields, timings) end
  if fanned then
    settle(jobkey, job, spawned, fields)
  elseif spawned == 0 then
    finish(jobkey, job, "done", fields)
  elseif spawned > 1 then
    -- The job fans out here: from now on it counts its messages.
    call("HSET", jobkey, unpack(submitted_of(job, {"outstanding", tostring(spawned),
      "state", "running"})))
    call("EXPIRE", jobkey, ttl)
  end
end

-- A message that failed for good: its dead letter, and its job failed.
local function dead_letter(jobkey, job, id, first, timings, fanned, trace)
  local error = ARGV[first + 1]
  call("XADD", dead, "*", "stage", stage, "job", job, "id", id, "stream", input,
    "data", ARGV[first], "error", error, "traceback", ARGV[first + 2],
    "attempts", ARGV[first + 3], "trace", trace, "failed_at", now)
  local fields = add_timings({"error", stage .. ": " .. error}, timings)
  if fanned then
    call("HINCRBY", jobkey, "failed", 1)
    settle(jobkey, job, 0, fields)
  else
    fields[#fields + 1] = "failed"
    fields[#fields + 1] = "1"
    finish(jobkey, job, "failed", fields)
  end
end

local lost, before, acked = {}, {}, {}
local emitted, dead_lettered, retried = 0, 0, 0
local arg = next_column  -- the next message's first argument

local count_of_all = count_all and tonumber(count_all)
-- A message that only passes on, as most do: one output, its job never fanned out, no trace,
-- one stage reading the output. It costs an XADD and nothing more.
local plain_stage = fan == 1 and not source

for i = 1, n do
  local id = ARGV[ids + i]
  local job = own_jobs and id or (jobs_at and ARGV[jobs_at + i] or job_all)
  if job == "" then job = id end
  local kind = kinds_at and ARGV[kinds_at + i] or kind_all
  local count = count_of_all or tonumber(ARGV[counts_at + i])
  local first = arg + 1
  arg = arg + count
  local owned = mine[id]
  if owned == nil then
    -- In a repeated call, ours already if no one holds it and the first call ran; else
    -- another consumer's now (it holds it, or took it and committed it).
    if first_call_ran and not lost_then[id] and #call("XPENDING", input, group, id, id, 1) == 0 then
      before[#before + 1] = id
    else
      lost[#lost + 1] = id
    end
  elseif owned then
    mine[id] = false
    acked[#acked + 1] = id
    local timings = timings_at and ARGV[timings_at + i] or timing_all
    local fanned = (fanouts_at and ARGV[fanouts_at + i] or fanout_all) == "1"
    local trace = traces_at and ARGV[traces_at + i] or trace_all
    if plain_stage and kind == "E" and count == 1 and not fanned and trace == "" then
      call("XADD", output, "*", "job", job, "data", ARGV[first], "timings", timings)
      emitted = emitted + 1
    else
      local jobkey = prefix .. job
      if source and kind ~= "S" then start(jobkey, job, id) end
      if kind == "E" then
        emitted = emitted + count
        emit(jobkey, job, id, first, count, timings, fanned, trace)
      elseif kind == "D" then
        local fields = add_timings({}, timings)
        if fanned then settle(jobkey, job, 0, fields) else finish(jobkey, job, "done", fields) end
      elseif kind == "R" then
        retried = retried + 1
        call("ZADD", retry, ARGV[first], ARGV[first + 1])
      elseif kind == "X" then
        dead_lettered = dead_lettered + 1
        dead_letter(jobkey, job, id, first, timings, fanned, trace)
      end
    end
  end
end

if #acked > 0 then call("XACK", input, group, unpack(acked)) end
if emitted > 0 then call("HINCRBY", stats, "out." .. stage, emitted) end
if dead_lettered > 0 then call("HINCRBY", stats, "dead." .. stage, dead_lettered) end
if retried > 0 then call("HINCRBY", stats, "retry." .. stage, retried) end
if #lost > 0 then
  call("HSET", stats, marker, now .. ":" .. table.concat(lost, ","))
else
  call("HSET", stats, marker, now)
end
return {lost, before}
