"""`redisprobe info`: each actor's own view of its server, side by side."""

from __future__ import annotations

from tests.clirun import run_cli


def test_info_single_is_clean_and_complete():
    result = run_cli("info", "--json")
    assert result.code == 0, result.err
    doc = result.json()
    assert doc["findings"] == []
    assert {a["role"] for a in doc["actors"]} == {"api", "processor"}
    for actor in doc["actors"]:
        sections = actor["sections"]
        assert {"server", "replication", "keyspace", "memory", "client", "config"} <= set(sections)
        assert sections["server"]["run_id"] == actor["server"]["run_id"]
        assert sections["client"]["id"] == str(actor["client_id"])
        assert sections["config"]["maxmemory-policy"] == "noeviction"
        assert sections["config"]["databases"] == "16"


def test_info_split_highlights_run_id_and_finds_different_server():
    result = run_cli("info", "--topology", "split")
    assert result.code == 1, result.err
    assert "different-server" in result.out
    assert "server run_id (identity)" in result.out
    assert "≠" in result.out


def test_info_per_role_dbs(redis_url):
    base = redis_url.rsplit("/", 1)[0]
    result = run_cli("info", "--api-url", f"{base}/1", "--processor-url", f"{base}/2", "--json")
    assert result.code == 1
    assert [f["rule"] for f in result.json()["findings"]] == ["different-db"]


def test_info_trace_re_renders(tmp_path):
    out = tmp_path / "info.jsonl"
    assert run_cli("info", "--out", str(out)).code == 0
    again = run_cli("report", str(out), "--json")
    assert again.code == 0
    assert len(again.json()["actors"]) == 2


def test_info_replica_shows_roles_and_names_replica_read():
    result = run_cli("info", "--topology", "replica", "--json")
    assert result.code == 1, result.err
    doc = result.json()
    roles = {a["role"]: a["sections"]["replication"]["role"] for a in doc["actors"]}
    assert roles == {"api": "master", "processor": "slave"}
    assert [f["rule"] for f in doc["findings"]] == ["replica-read"]


def test_info_pids_for_live_processes_on_lookalike_servers():
    import subprocess

    from redisprobe.targets.sandbox import sandbox

    with sandbox("split") as box:
        api = subprocess.Popen(["redis-cli", "-u", box.role_urls["api"], "BLPOP", "never", "30"],
                               stdout=subprocess.DEVNULL)
        worker = subprocess.Popen(["redis-cli", "-u", box.role_urls["processor"], "BLPOP", "never", "30"],
                                  stdout=subprocess.DEVNULL)
        try:
            import time

            time.sleep(0.5)
            result = run_cli("info", "--pids", f"api={api.pid},worker={worker.pid}", "--json")
        finally:
            api.kill()
            worker.kill()
            api.wait()
            worker.wait()
    assert result.code == 1, result.err
    doc = result.json()
    assert [f["rule"] for f in doc["findings"]] == ["different-server"]
    pids = {p["pid"]: p for p in doc["pids"]}
    assert pids[api.pid]["label"] == "api" and pids[worker.pid]["label"] == "worker"
    assert pids[api.pid]["connections"][0]["server"]["run_id"] != pids[worker.pid]["connections"][0]["server"]["run_id"]


def test_info_unknown_pid_is_an_error():
    result = run_cli("info", "--pids", "999999998")
    assert result.code == 2 and "999999998" in result.err and "Traceback" not in result.err


def _pids_info_while_subscribed(urls: dict[str, str]) -> tuple[dict[str, int], object]:
    """`info --pids` while one redis-cli per label holds a connection open (SUBSCRIBE works on replicas too)."""
    import subprocess
    import time

    procs = {label: subprocess.Popen(["redis-cli", "-u", url, "SUBSCRIBE", "news"], stdout=subprocess.DEVNULL)
             for label, url in urls.items()}
    try:
        time.sleep(0.5)
        spec = ",".join(f"{label}={proc.pid}" for label, proc in procs.items())
        return {label: proc.pid for label, proc in procs.items()}, run_cli("info", "--pids", spec, "--json")
    finally:
        for proc in procs.values():
            proc.kill()
            proc.wait()


def test_info_pids_on_a_primary_and_its_replica_is_one_dataset_not_different_servers():
    from redisprobe.targets.sandbox import sandbox

    with sandbox("replica") as box:
        pids, result = _pids_info_while_subscribed({"api": box.role_urls["api"], "worker": box.role_urls["processor"]})
    assert result.code == 0, (result.out, result.err)
    doc = result.json()
    assert doc["findings"] == []
    assert {p["label"]: p["pid"] for p in doc["pids"]} == pids
    roles = {p["label"]: p["connections"][0]["server"]["role"] for p in doc["pids"]}
    assert roles == {"api": "master", "worker": "slave"}


def test_info_pids_on_two_nodes_of_one_cluster_is_one_dataset_not_different_servers():
    from redisprobe.targets.sandbox import sandbox

    with sandbox("cluster") as box:
        pids, result = _pids_info_while_subscribed({"api": box.role_urls["node0"], "worker": box.role_urls["node1"]})
    assert result.code == 0, (result.out, result.err)
    doc = result.json()
    assert doc["findings"] == []
    assert {p["label"]: p["pid"] for p in doc["pids"]} == pids
    ran = {p["label"]: p["connections"][0]["server"]["run_id"] for p in doc["pids"]}
    assert ran["api"] != ran["worker"]  # two servers, and yet one dataset


def test_info_pids_on_two_clusters_that_look_alike_is_different_servers():
    from redisprobe.targets.sandbox import sandbox

    with sandbox("cluster") as one, sandbox("cluster") as other:
        pids, result = _pids_info_while_subscribed({"api": one.role_urls["node0"], "worker": other.role_urls["node0"]})
    assert result.code == 1, (result.out, result.err)
    doc = result.json()
    assert [f["rule"] for f in doc["findings"]] == ["different-server"]
    assert {p["label"]: p["pid"] for p in doc["pids"]} == pids
