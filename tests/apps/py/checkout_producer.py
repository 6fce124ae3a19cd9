"""A checkout places several orders at once: a Celery chord of process_order tasks with a summarize callback."""

import time

from celery import chord
from tasks import process_order, summarize

checkout = 0
while True:
    checkout += 1
    first = checkout * 10
    result = chord(process_order.s(first + i) for i in range(4))(summarize.s())
    if checkout % 5 == 0:
        try:
            result.get(timeout=3)
        except Exception as error:  # a slow worker must not stop the checkout
            print(f"checkout {checkout}: {error!r}", flush=True)
    time.sleep(0.3)
