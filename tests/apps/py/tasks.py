"""The shop's Celery app (broker and result backend on Redis). Each order task records a report kept for an hour
and bumps a counter, through the module's own redis-py client."""

import json
import os
from datetime import datetime, timedelta

import redis
from celery import Celery

URL = os.environ["REDIS_URL"]
app = Celery("shop", broker=URL, backend=URL)
app.conf.result_expires = 600
app.conf.broker_connection_retry_on_startup = True

# STATS_SINGLE_CONNECTION=1: one dedicated connection instead of a pool (made when this module is imported).
stats = redis.Redis.from_url(URL, single_connection_client=os.environ.get("STATS_SINGLE_CONNECTION") == "1")


@app.task
def process_order(order_id: int) -> dict:
    report = {"order": order_id, "total": 10 + order_id % 90, "processed_at": datetime.utcnow().isoformat()}
    key = f"report:{order_id}"
    stats.set(key, json.dumps(report))
    stats.expireat(key, datetime.utcnow() + timedelta(hours=1))
    stats.hincrby("stats:orders", "processed", 1)
    return report


@app.task
def summarize(reports: list) -> dict:
    """The chord's callback: one summary of a checkout's orders."""
    return {"orders": len(reports), "total": sum(report["total"] for report in reports)}
