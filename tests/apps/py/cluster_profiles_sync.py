"""Last-seen sync (redis-py), run by PM2: stamps lastSeen into 5 cached profiles every 300 ms (SET ... KEEPTTL).
CLUSTER_CLIENT=1 uses RedisCluster; without it, the plain redis.Redis the job used before the move to a cluster,
connected to the one node REDIS_URL names: every profile another node owns is refused with MOVED (logged and
skipped)."""

import json
import os
import time

import redis
from redis.cluster import RedisCluster

URL = os.environ["REDIS_URL"]
r = RedisCluster.from_url(URL, decode_responses=True) if os.environ.get("CLUSTER_CLIENT") == "1" \
    else redis.Redis.from_url(URL, decode_responses=True)

user = 0
while True:
    for _ in range(5):
        user = user % 30 + 1
        key = f"profile:{user}"
        try:
            raw = r.get(key)
            if raw is None:
                continue
            profile = json.loads(raw)
            profile["lastSeen"] = time.time()
            r.set(key, json.dumps(profile), keepttl=True)
        except redis.exceptions.ResponseError as exc:
            print(f"{key}: {exc}", flush=True)
    time.sleep(0.3)
