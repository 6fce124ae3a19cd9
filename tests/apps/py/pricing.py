"""Quote service (redis-py), run by PM2: prices each basket from the catalog's cached prices. Where a product's
key lives comes from its PRODUCT_KEY setting ({sku} is the product id)."""

import os
import random
import sys
import time

import redis

r = redis.Redis.from_url(os.environ["REDIS_URL"], decode_responses=True)
PRODUCTS = int(os.environ.get("PRODUCTS", "10500"))
PRODUCT_KEY = os.environ.get("PRODUCT_KEY", "product:{sku}")

while True:
    basket = [f"sku-{random.randrange(PRODUCTS):05d}" for _ in range(3)]
    prices = [r.get(PRODUCT_KEY.format(sku=sku)) for sku in basket]
    missing = [sku for sku, price in zip(basket, prices, strict=True) if price is None]
    if missing:
        print(f"quote: no price for {', '.join(missing)}", file=sys.stderr, flush=True)
    time.sleep(0.1)
