"""rq jobs of the ingest app."""

import json
import os

from redis import Redis

r = Redis.from_url(os.environ["REDIS_URL"])


def flush_batch(key: str) -> int:
    """Store a batch's messages (here: count them into a daily total), then drop the batch."""
    messages = [json.loads(raw) for raw in r.lrange(key, 0, -1)]
    r.hincrby("ingest:totals", "messages", len(messages))
    r.delete(key)
    print(f"flushed {key}: {len(messages)} messages [pid {os.getpid()}]", flush=True)
    return len(messages)
