"""Account api on a Redis Cluster (redis-py RedisCluster), run by PM2: caches every profile (profile:<id> EX 30,
spread over the primaries by their hash slots) and re-saves one every 100 ms."""

import json
import os
import time

from redis.cluster import RedisCluster

rc = RedisCluster.from_url(os.environ["REDIS_URL"], decode_responses=True)
USERS = 30


def save(user: int) -> None:
    rc.set(f"profile:{user}", json.dumps({"id": user, "plan": "pro" if user % 3 == 0 else "free"}), ex=30)


for user in range(1, USERS + 1):
    save(user)
user = 0
while True:
    user = user % USERS + 1
    save(user)
    time.sleep(0.1)
