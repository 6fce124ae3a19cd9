"""write-rejected end to end: real servers refuse real clients' writes (OOM, READONLY, MISCONF, NOPERM) while the
real `redisprobe monitor` captures; MONITOR shows none of them, the doctor must still name the error, the setting
behind it and the pid that sent them. A healthy capture (including ordinary errors) stays silent."""

from __future__ import annotations

import time
from contextlib import ExitStack

import pytest
import redis

from redisprobe.targets.sandbox import sandbox
from tests.clients import Client, start_client
from tests.monitorrun import MonitorRun, start_monitor


def _writes(writer: Client, reader: Client, *, count: int = 12) -> list[str]:
    """The writer stores sessions and the reader looks for each one, spread over more than two samples."""
    replies = []
    for n in range(count):
        replies.append(writer.send("SET", f"session:{n}", "data"))
        reader.send("GET", f"session:{n}")
        time.sleep(0.1)
    return replies


def _rejected(doc: dict) -> dict:
    found = [f for f in doc["findings"] if f["rule"] == "write-rejected"]
    assert len(found) == 1, doc["findings"]
    return found[0]


def _culprit_is(finding: dict, pid: int) -> None:
    assert finding["culprit"] and finding["culprit"]["pid"] == pid, finding
    assert any(f"pid {pid}" in line for line in finding["evidence"]), finding["evidence"]


def test_oom_under_noeviction_names_the_writer_and_the_memory_setting(private_server, stack):
    url = private_server.urls[0]
    admin = redis.Redis.from_url(url)
    admin.config_set("maxmemory-policy", "noeviction")
    for n in range(40):
        admin.set(f"blob:{n}", "x" * 65536)  # what filled the memory before anyone looked
    admin.config_set("maxmemory", "1mb")
    writer, reader = start_client(stack, url), start_client(stack, url)
    run = start_monitor(stack, url, {"api": writer.pid, "reader": reader.pid})
    replies = _writes(writer, reader)
    assert all("used memory > 'maxmemory'" in reply for reply in replies), replies
    doc = run.stop_json()
    finding = _rejected(doc)
    assert "OOM" in finding["summary"] and "SET x" in finding["summary"]
    _culprit_is(finding, writer.pid)
    assert any("noeviction" in line and "maxmemory" in line for line in finding["evidence"]), finding["evidence"]
    assert any(line.startswith("meanwhile") and "missed keys that no accepted write created" in line
               for line in finding["evidence"]), finding["evidence"]
    assert any(f"pid {reader.pid}" in line and "GET session:" in line for line in finding["evidence"])
    # MONITOR never showed the refused writes: no key life for them
    assert not [k for k in doc["keys"] if k["key"].startswith("session:") and k.get("created_by")]


def test_readonly_write_to_a_replica_names_the_writer():
    with sandbox("replica") as box, ExitStack() as stack:
        replica = box.servers[1].url
        writer, reader = start_client(stack, replica), start_client(stack, replica)
        run = start_monitor(stack, replica, {"api": writer.pid, "reader": reader.pid})
        replies = _writes(writer, reader)
        assert all("read only replica" in reply for reply in replies), replies
        doc = run.stop_json()
    finding = _rejected(doc)
    assert "READONLY" in finding["summary"]
    _culprit_is(finding, writer.pid)
    assert any("replica" in line and "replica-read-only yes" in line for line in finding["evidence"])


def test_noperm_is_named_from_the_servers_acl_log(private_server, stack):
    url = private_server.urls[0]
    admin = redis.Redis.from_url(url)
    admin.acl_setuser("reporting", enabled=True, passwords=["+secret-pw"], keys=["*"], commands=["+@all", "-set"])
    limited = url.replace("redis://", "redis://reporting:secret-pw@")
    writer, reader = start_client(stack, limited), start_client(stack, url)
    run = start_monitor(stack, url, {"api": writer.pid, "reader": reader.pid})
    replies = _writes(writer, reader, count=5)
    assert all("no permissions" in reply for reply in replies), replies
    doc = run.stop_json()
    finding = _rejected(doc)
    assert "NOPERM" in finding["summary"]
    _culprit_is(finding, writer.pid)
    assert any("ACL user reporting lacks the permission for command set" in line for line in finding["evidence"])
    assert any("ACL LOG names it" in line for line in finding["evidence"])
    assert "secret-pw" not in str(doc)


def test_misconf_after_a_failed_save_names_the_setting(stack):
    with sandbox("single", extra=["--dir", "/proc", "--save", "3600 1"]) as box:  # no rdb can be written there
        url = box.urls[0]
        admin = redis.Redis.from_url(url)
        admin.ping()
        writer, reader = start_client(stack, url), start_client(stack, url)
        run = start_monitor(stack, url, {"api": writer.pid, "reader": reader.pid})
        admin.bgsave()  # the save fails during the capture (a full or read-only disk)
        deadline = time.monotonic() + 30
        while admin.info("persistence")["rdb_last_bgsave_status"] != "err" and time.monotonic() < deadline:
            time.sleep(0.05)
        replies = _writes(writer, reader)
        assert all("unable to persist to disk" in reply for reply in replies), replies
        doc = run.stop_json()
        stack.close()
        admin.config_set("save", "")  # else the server refuses to stop on SIGTERM: it cannot save
    finding = _rejected(doc)
    assert "MISCONF" in finding["summary"]
    _culprit_is(finding, writer.pid)
    assert any("rdb_last_bgsave_status err" in line and "stop-writes-on-bgsave-error is yes" in line
               for line in finding["evidence"])


def test_healthy_capture_with_ordinary_errors_is_silent(private_server, stack):
    url = private_server.urls[0]
    writer, reader = start_client(stack, url), start_client(stack, url)
    run = start_monitor(stack, url, {"api": writer.pid, "reader": reader.pid})
    replies = _writes(writer, reader, count=6)
    assert replies == ["true"] * 6, replies
    writer.send("GET")  # wrong arity: refused, but an ordinary error that hides nobody's writes
    writer.send("LPUSH", "session:0", "x")  # WRONGTYPE: failed while it ran
    doc = run.stop_json()
    assert not [f for f in doc["findings"] if f["rule"] == "write-rejected"], doc["findings"]


@pytest.mark.parametrize("denied", [["-acl"], ["-config"], ["-acl", "-config", "-client|list"]])
def test_a_probe_user_without_acl_log_gets_a_note_and_no_false_finding(private_server, stack, denied):
    """redisprobe's own refused commands (ACL LOG, CONFIG GET, CLIENT LIST) are never the app's refusals."""
    url = private_server.urls[0]
    admin = redis.Redis.from_url(url)
    admin.acl_setuser("probe", enabled=True, passwords=["+probe-pw"], keys=["*"], channels=["*"],
                      commands=["+@all", *denied])
    writer, reader = start_client(stack, url), start_client(stack, url)
    run = MonitorRun("--url", url.replace("redis://", "redis://probe:probe-pw@"), "--pids",
                     f"api={writer.pid},reader={reader.pid}", "--json", "--enable-events")
    stack.callback(run.kill)
    _writes(writer, reader, count=6)
    code, out, err = run.stop()
    assert code == 130 and "Traceback" not in err, err
    import json

    doc = json.loads(out)
    assert not [f for f in doc["findings"] if f["rule"] == "write-rejected"], doc["findings"]
    assert ("cannot run ACL LOG" in out + err) == ("-acl" in denied), out + err


def test_refusals_of_redisprobes_own_connections_are_not_counted(private_server):
    """Another redisprobe observer refused mid-capture (its ACL LOG entry names it): not the app's refusal."""
    from redisprobe.producers.observers.refusals import RefusalSampler
    from redisprobe.targets.url import parse_target

    url = private_server.urls[0]
    admin = redis.Redis.from_url(url)
    for user in ("probe", "shopuser"):  # ACL LOG groups entries by user: each its own
        admin.acl_setuser(user, enabled=True, passwords=["+pw"], keys=["*"], commands=["+@all", "-keys"])
    events: list = []
    sampler = RefusalSampler(parse_target(url), events.append, interval=0.1).start()
    ours = redis.Redis.from_url(url.replace("redis://", "redis://probe:pw@"),
                                client_name="redisprobe:observer:baseline")
    app = redis.Redis.from_url(url.replace("redis://", "redis://shopuser:pw@"), client_name="shop")
    for _ in range(3):
        with pytest.raises(redis.exceptions.NoPermissionError):
            ours.keys("*")
    time.sleep(0.5)
    with pytest.raises(redis.exceptions.NoPermissionError):
        app.keys("*")
    time.sleep(0.5)
    sampler.stop()
    ours.close()
    app.close()
    samples = [e for e in events if type(e).__name__ == "Refusals"]
    assert samples[-1].final
    assert samples[-1].errors.get("NOPERM") == 1 and samples[-1].rejected == {"keys": 1}, samples[-1]
    [entry] = [entry for sample in samples for entry in sample.acl]
    assert entry["client-name"] == "shop" and entry["object"] == "keys" and entry["new"] == "1"


def test_a_server_already_in_misconf_is_attached_to_and_its_refusals_named(stack):
    """A server whose last save failed refuses PING as well as writes: redisprobe must still attach (the server
    answered) and name the refusals, the very symptom a user attaches for."""
    with sandbox("single", extra=["--dir", "/proc", "--save", "3600 1"]) as box:
        url = box.urls[0]
        admin = redis.Redis.from_url(url)
        admin.bgsave()
        deadline = time.monotonic() + 30
        while admin.info("persistence")["rdb_last_bgsave_status"] != "err" and time.monotonic() < deadline:
            time.sleep(0.05)
        with pytest.raises(redis.ResponseError, match="MISCONF"):
            admin.ping()  # what every attach begins with
        writer, reader = start_client(stack, url), start_client(stack, url)
        run = start_monitor(stack, url, {"api": writer.pid, "reader": reader.pid})
        replies = _writes(writer, reader)
        assert all("unable to persist to disk" in reply for reply in replies), replies
        doc = run.stop_json()
        stack.close()
        admin.config_set("save", "")
    assert not doc["gaps"], doc["gaps"]  # the keyspace link's PING marks are refused too, and must not kill it
    finding = _rejected(doc)
    assert "MISCONF" in finding["summary"]
    _culprit_is(finding, writer.pid)
