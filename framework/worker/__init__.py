"""The worker: one stage's consumer, the engine's moving part. Its parts, each a module:

    reader ──accept──> holdings ──inbox──> runners ──add──> committer ──commit.lua──> Redis
      │  XAUTOCLAIM, then       │  held, lost,     async tasks, or     batches what
      │  XREADGROUP for room    │  read-ahead      threads for `def`   finished; settles
      └── backpressure gate     └── lease keeper (a thread): XCLAIM JUSTID every lease / 3
    housekeeper: due retries, trimming, readings of the counters

- stage_worker.py  StageWorker: builds the parts, start-up, drain, hand-back, stop
- holdings.py      what the worker holds, and the only code that changes it
- read_ahead.py    how many messages to hold: the rule, from the measured call time
- reader.py        reclaim, then read for the room the holdings have
- inbox.py         where read messages wait for an async runner
- runners.py       async runners, and what every runner shares (ctx, reclaimed runs, batches)
- thread_runners.py  runner threads for plain functions, a hop per bunch of messages
- committer.py     the task that batches finished messages into commit.lua calls
- commit_call.py   the arguments of one commit.lua call, and what it answered
- leases.py        the lease keeper thread, reclaim, hand-back, the count of a run's start
- backpressure.py  the gate that holds a feeding stage while one downstream is full
- housekeeping.py  what every worker shares: promoting retries, trimming, stats readings
- channels.py      the reader's and committer's connections, without redis-py's layers
"""

from framework.worker.stage_worker import StageWorker

__all__ = ["StageWorker"]
