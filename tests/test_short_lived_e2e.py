"""A connection that comes and goes between two CLIENT LIST samples (a forked job, a one-shot script) still gets
its pid: the kernel's socket table is read for new connections and each is mapped while it is open."""

from __future__ import annotations

import subprocess
import sys

from tests.clirun import new_marker
from tests.monitorrun import MonitorRun

ONE_SHOT = """
import sys
import time
import redis
client = redis.Redis.from_url(sys.argv[1])
client.set(sys.argv[2], "v", ex=60)
time.sleep(0.1)  # a job's work: about as long as rq's work horse lives
client.close()
"""


def test_a_one_shot_client_is_named_with_its_pid(shared_sandbox):
    url = shared_sandbox.urls[0]
    prefix = new_marker()
    run = MonitorRun("--url", url, "--json", "--keys", f"{prefix}*")
    try:
        shots = []
        for index in range(3):  # each connects, writes and is gone in a few tens of milliseconds
            shot = subprocess.run([sys.executable, "-c", ONE_SHOT, url, f"{prefix}:{index}"], check=True,
                                  timeout=60)
            shots.append(shot)
        doc = run.stop_json(settle=1.0)
    finally:
        run.kill()
    keys = {k["key"]: k for k in doc["keys"] if k["key"].startswith(prefix)}
    assert len(keys) == 3, keys
    named = [k["created_by"] for k in keys.values() if k["created_by"].get("pid")]
    # the kernel's table is read every 20 ms: a connection open for 100 ms is caught (on a very busy machine, most)
    assert len(named) >= 2, [k["created_by"] for k in keys.values()]
    assert all("python" in (c.get("label") or "") or c.get("label") == "" for c in named), named
