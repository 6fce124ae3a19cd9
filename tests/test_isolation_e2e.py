"""`redisprobe isolation` end to end: real CLI, real servers, real actor processes."""

from __future__ import annotations

import redis

from tests.clirun import run_cli


def test_single_sandbox_is_visible_and_clean():
    result = run_cli("isolation", "--json", "--timeout", "3")
    assert result.code == 0, result.err
    doc = result.json()
    assert doc["verdict"] == "visible"
    assert doc["findings"] == []
    roles = {a["role"]: a for a in doc["actors"]}
    assert set(roles) == {"api", "processor"}
    assert roles["api"]["pid"] != roles["processor"]["pid"]
    assert roles["api"]["server"]["run_id"] == roles["processor"]["server"]["run_id"]
    assert roles["api"]["client_id"] != roles["processor"]["client_id"]
    assert all(check["seen"] for check in doc["checks"])


def test_split_topology_names_different_server():
    result = run_cli("isolation", "--topology", "split", "--json", "--timeout", "0.5")
    assert result.code == 1, result.err
    doc = result.json()
    assert doc["verdict"] == "not-visible"
    assert [f["rule"] for f in doc["findings"]] == ["different-server"]
    servers = [a["server"] for a in doc["actors"]]
    assert servers[0]["port"] == servers[1]["port"] and servers[0]["version"] == servers[1]["version"]
    assert servers[0]["run_id"] != servers[1]["run_id"]
    assert "port, version, db agree" in doc["findings"][0]["summary"]


def test_replica_topology_names_replica_read():
    result = run_cli("isolation", "--topology", "replica", "--json", "--timeout", "2")
    assert result.code == 1, result.err
    doc = result.json()
    finding = next(f for f in doc["findings"] if f["rule"] == "replica-read")
    assert [f["rule"] for f in doc["findings"]] == ["replica-read"]  # a replica and its primary: one dataset
    roles = {a["role"]: a for a in doc["actors"]}
    assert roles["processor"]["server"]["role"] == "slave"
    assert any("replication offset gap" in line for line in finding["evidence"])
    assert any("READONLY" in line for line in finding["evidence"])  # the ack can't be written on a replica


def test_per_role_urls_with_different_dbs(redis_url, r):
    base = redis_url.rsplit("/", 1)[0]
    result = run_cli("isolation", "--api-url", f"{base}/0", "--processor-url", f"{base}/3", "--json",
                     "--timeout", "0.5")
    assert result.code == 1, result.err
    doc = result.json()
    assert [f["rule"] for f in doc["findings"]] == ["different-db"]
    dbs = {a["role"]: a["db"] for a in doc["actors"]}
    assert dbs == {"api": 0, "processor": 3}
    # nothing left behind on the user's server
    assert not list(r.scan_iter("redisprobe:*"))
    assert not list(redis.Redis.from_url(f"{base}/3").scan_iter("redisprobe:*"))


def test_key_prefix_mismatch_on_user_server(redis_url, r):
    result = run_cli("isolation", "--url", redis_url, "--api-prefix", "app:", "--json", "--timeout", "0.5")
    assert result.code == 1, result.err
    doc = result.json()
    finding = next(f for f in doc["findings"] if f["rule"] == "key-prefix-mismatch")
    assert any("redisprobe:app:isolation:" in line for line in finding["evidence"])
    assert not list(r.scan_iter("redisprobe:*"))


def test_user_server_healthy_run_writes_only_under_namespace_and_cleans_up(redis_url, r):
    r.set("user:own:key", "keep")
    before = set(r.keys("*"))
    result = run_cli("isolation", "--url", redis_url, "--timeout", "3")
    assert result.code == 0, result.err + result.out
    assert "verdict: visible" in result.out
    assert set(r.keys("*")) == before
    assert r.get("user:own:key") == b"keep"
    r.delete("user:own:key")


def test_redis_url_environment_is_the_default(redis_url):
    from tests.clirun import cli_env

    result = run_cli("isolation", "--json", "--timeout", "3", env=cli_env(REDIS_URL=redis_url))
    assert result.code == 0, result.err
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    assert {a["server"]["port"] for a in result.json()["actors"]} == {port}


def test_prefix_mismatch_is_one_finding_live_and_from_the_saved_trace(tmp_path):
    """One finding for the one mismatch, whatever the keys' types (the actors' declared prefixes and the
    doctor's name index agree on it), and `report` on the saved trace says exactly what the live run said."""
    out = tmp_path / "isolation.jsonl"
    live = run_cli("isolation", "--api-prefix", "app:", "--json", "--timeout", "0.5", "--out", str(out))
    assert live.code == 1, live.err
    findings = live.json()["findings"]
    assert [f["rule"] for f in findings] == ["key-prefix-mismatch"], findings
    assert len(findings[0]["keys"]) >= 3  # the string, hash and list the processor looked for
    assert "prefix 'app:' vs ''" in findings[0]["summary"]
    offline = run_cli("report", str(out), "--json")
    assert offline.code == 1, offline.err
    assert offline.json()["findings"] == findings
