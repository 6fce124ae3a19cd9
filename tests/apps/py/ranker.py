"""Ranking worker (redis-py), run by PM2: ranks each feed once, when the api has built it: pushes a recommended
post on top and keeps the feed cached for its own CACHE_TTL."""

import os
import random
import time

import redis

r = redis.Redis.from_url(os.environ["REDIS_URL"], decode_responses=True)
CACHE_TTL = int(os.environ.get("CACHE_TTL", "30"))

ranked: set[str] = set()
while True:
    for user in r.smembers("feeds:active") - ranked:
        ranked.add(user)
        key = f"feed:{user}"
        if r.exists(key):
            r.lpush(key, f"post:recommended:{random.randint(1, 10_000)}")
            r.expire(key, CACHE_TTL)
    time.sleep(0.2)
