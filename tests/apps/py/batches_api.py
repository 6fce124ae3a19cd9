"""The ingest api (redis-py + rq): appends incoming messages to the current batch list, 10 per batch, and has the
rq worker flush each batch (FLUSH_WHEN=complete: once the batch is full; =opened: as soon as it opens, trusting
the queue to be slower than the batch)."""

import json
import os
import time

from redis import Redis
from rq import Queue

r = Redis.from_url(os.environ["REDIS_URL"])
queue = Queue("batches", connection=r)
FLUSH_WHEN = os.environ.get("FLUSH_WHEN", "complete")
PER_BATCH = 10

batch = 0
count = 0
while True:
    key = f"batch:{batch}"
    r.rpush(key, json.dumps({"batch": batch, "n": count, "at": time.time()}))
    r.expire(key, 10)
    count += 1
    if (FLUSH_WHEN == "opened" and count == 1) or (FLUSH_WHEN == "complete" and count == PER_BATCH):
        queue.enqueue("jobs.flush_batch", key)
    if count == PER_BATCH:
        batch += 1
        count = 0
    time.sleep(0.2)
