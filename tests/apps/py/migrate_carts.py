"""One-off migration to the v2 cart layout, run by hand from a shell: renames every cart:<id> to v2:cart:<id>,
gently (one key every 250 ms: 15 s for the 60 carts, longer than the app's warmup plus any capture), while the old
storefront is still deployed."""

import os
import time

import redis

r = redis.Redis.from_url(os.environ["REDIS_URL"], decode_responses=True)
for key in list(r.scan_iter("cart:*", count=100)):
    cart_id = key.split(":", 1)[1]
    r.rename(key, f"v2:cart:{cart_id}")
    time.sleep(0.25)
print("migrated")
