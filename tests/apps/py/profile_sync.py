"""Profile sync worker (redis-py), run by PM2: stamps `last_seen` into the cached profiles of recent users."""

import json
import os
import time

import redis

r = redis.Redis.from_url(os.environ["REDIS_URL"], decode_responses=True)
KEEP_TTL = os.environ.get("KEEP_TTL") == "1"

while True:
    for user in r.lrange("users:recent", 0, 4):
        key = f"user:{user}:profile"
        raw = r.get(key)
        if raw is None:
            continue
        profile = json.loads(raw)
        profile["lastSeen"] = time.time()
        if KEEP_TTL:
            r.set(key, json.dumps(profile), keepttl=True)
        else:
            r.set(key, json.dumps(profile))
    time.sleep(0.3)
