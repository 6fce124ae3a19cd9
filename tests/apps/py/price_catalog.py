"""Price catalog (redis-py), run by PM2: loads every product's price at start (a cache of some ten thousand SKUs,
made long before anyone looks), then re-prices a few products a second."""

import os
import random
import time

import redis

r = redis.Redis.from_url(os.environ["REDIS_URL"], decode_responses=True)
PRODUCTS = int(os.environ.get("PRODUCTS", "10500"))

pipe = r.pipeline(transaction=False)
for n in range(PRODUCTS):
    pipe.set(f"product:sku-{n:05d}", f"{10 + n % 90}.99")
pipe.execute()

while True:
    n = random.randrange(PRODUCTS)
    r.set(f"product:sku-{n:05d}", f"{10 + random.randrange(90)}.49")
    time.sleep(0.25)
