"""The shop api's side of Celery: every order placed becomes a task; now and then it waits for a result."""

import time

from tasks import process_order

order = 0
while True:
    order += 1
    result = process_order.delay(order)
    if order % 10 == 0:
        try:
            result.get(timeout=3)
        except Exception as error:  # a slow worker must not stop the shop
            print(f"order {order}: {error!r}", flush=True)
    time.sleep(0.1)
