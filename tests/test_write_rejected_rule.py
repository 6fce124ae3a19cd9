"""write-rejected on hand-made traces: refusal samples (trace.Refusals) between MONITOR lines and CLIENT LIST samples.

The end-to-end tests (tests/test_write_rejected_e2e.py) provoke each refusal on a real server; these pin down the
counting: deltas between samples of one server run, who gets the count, and silence without a refusal."""

from __future__ import annotations

from redisprobe import trace
from redisprobe.analysis import Context, diagnose
from redisprobe.findings import Finding, to_builtins
from tests.tracebuild import TraceBuilder

RUN = "r" * 40
NOEVICTION = {"used_memory": "4300000", "config:maxmemory": "4194304", "config:maxmemory-policy": "noeviction",
              "role": "master"}


def _sample(tb: TraceBuilder, *, errors: dict[str, int] | None = None, rejected: dict[str, int] | None = None,
            suspects: list[dict[str, str]] | None = None, acl: list[dict[str, str]] | None = None,
            settings: dict[str, str] | None = None, run_id: str = RUN) -> None:
    tb.add(trace.Refusals(t=tb.now, target=tb.target, run_id=run_id, errors=errors or {}, rejected=rejected or {},
                          acl=acl or [], suspects=suspects or [], settings=settings or {}))
    tb.tick()


def _rejected(tb: TraceBuilder, watched: dict[int, str]) -> list[Finding]:
    return [f for f in diagnose(tb.events, Context(watched=watched)) if f.rule == "write-rejected"]


def test_oom_counts_are_shared_out_and_the_most_refused_writer_is_named() -> None:
    tb = TraceBuilder()
    tb.client("api", pid=100, client_id=7, port=5001)
    tb.client("audit", pid=300, client_id=9, port=5003)
    _sample(tb, errors={"ERR": 3}, settings=NOEVICTION)
    tb.at(0.5)
    _sample(tb, errors={"ERR": 3, "OOM": 55}, rejected={"lpush": 50, "set": 5}, settings=NOEVICTION,
            suspects=[{"id": "9", "addr": "127.0.0.1:5003", "cmd": "lpush"},
                      {"id": "7", "addr": "127.0.0.1:5001", "cmd": "set"}])
    tb.at(1.0)
    _sample(tb, errors={"ERR": 3, "OOM": 110}, rejected={"lpush": 100, "set": 10}, settings=NOEVICTION,
            suspects=[{"id": "9", "addr": "127.0.0.1:5003", "cmd": "lpush"}])
    [finding] = _rejected(tb, {100: "api", 300: "audit"})
    assert finding.culprit is not None and finding.culprit.pid == 300
    assert "refused 110 command(s) with OOM" in finding.summary and "LPUSH x100, SET x10" in finding.summary
    assert any("noeviction" in line and "maxmemory 4.0 MB" in line for line in finding.evidence)
    assert any("pid 300 (audit)" in line and "LPUSH x100" in line and "likely" in line for line in finding.evidence)
    assert any("pid 100 (api)" in line and "SET x5" in line for line in finding.evidence), finding.evidence


def test_an_actors_own_refused_reply_is_sure() -> None:
    tb = TraceBuilder()
    api = tb.actor("api", pid=100, client_id=7)
    _sample(tb, settings=NOEVICTION)
    tb.at(0.2)
    api.op("RPUSH", "batch:1", "m1", error="OOM command not allowed when used memory > 'maxmemory'.")
    tb.at(0.5)
    _sample(tb, errors={"OOM": 1}, rejected={"rpush": 1})
    [finding] = _rejected(tb, {100: "api"})
    assert finding.culprit is not None and finding.culprit.pid == 100
    assert any("sure" in line and "its own replies were the error" in line for line in finding.evidence)
    assert any("RPUSH batch:1 m1 -> error OOM" in line for line in finding.evidence), finding.evidence


def test_noperm_names_the_client_the_acl_log_names() -> None:
    tb = TraceBuilder()
    tb.client("reporting", pid=200, client_id=12, port=5012)
    _sample(tb)
    tb.at(0.5)
    _sample(tb, errors={"NOPERM": 3}, rejected={"set": 3},
            acl=[{"reason": "command", "context": "toplevel", "object": "set", "username": "reporting",
                  "client-id": "12", "client-addr": "127.0.0.1:5012", "new": "3"}])
    [finding] = _rejected(tb, {200: "reporting"})
    assert finding.culprit is not None and finding.culprit.pid == 200
    assert "NOPERM" in finding.summary
    assert any("ACL user reporting lacks the permission for command set" in line for line in finding.evidence)


def test_ordinary_errors_and_a_single_sample_are_silent() -> None:
    tb = TraceBuilder()
    api = tb.client("api", pid=100, client_id=7, port=5001)
    _sample(tb, errors={"OOM": 40}, rejected={"set": 40})  # refused before the capture: not this capture's
    api("SET", "k", "v")
    tb.at(0.5)
    _sample(tb, errors={"OOM": 40, "ERR": 2, "WRONGTYPE": 1}, rejected={"set": 40, "get": 2})
    assert _rejected(tb, {100: "api"}) == [], [to_builtins(f) for f in _rejected(tb, {100: "api"})]
    lone = TraceBuilder()
    _sample(lone, errors={"OOM": 5}, rejected={"set": 5})
    assert _rejected(lone, {}) == []


def test_a_restart_between_samples_is_no_refusal() -> None:
    tb = TraceBuilder()
    _sample(tb, errors={"OOM": 40}, rejected={"set": 40})
    tb.at(0.5)
    _sample(tb, errors={"OOM": 3}, rejected={"set": 3}, run_id="s" * 40)  # counts start over
    tb.at(1.0)
    _sample(tb, errors={"OOM": 3}, rejected={"set": 3}, run_id="s" * 40)
    assert _rejected(tb, {}) == []


def test_readonly_names_the_replica_setting_and_unknown_sender_is_said() -> None:
    tb = TraceBuilder()
    replica = {"role": "slave", "master_host": "10.0.0.5", "master_port": "6379", "config:replica-read-only": "yes"}
    _sample(tb, settings=replica)
    tb.at(0.5)
    _sample(tb, errors={"READONLY": 4}, rejected={"hset": 4}, settings=replica)
    [finding] = _rejected(tb, {})
    assert finding.culprit is None
    assert any("replica of 10.0.0.5:6379" in line and "replica-read-only yes" in line for line in finding.evidence)
    assert any("who sent them is unknown" in line for line in finding.evidence)


def test_noperm_on_connection_housekeeping_is_silent() -> None:
    """A library's CLIENT SETINFO or HELLO denied at connect hides nobody's data."""
    tb = TraceBuilder()
    tb.client("api", pid=100, client_id=7, port=5001)
    _sample(tb)
    tb.at(0.5)
    _sample(tb, errors={"NOPERM": 2}, rejected={"client|setinfo": 2},
            acl=[{"reason": "command", "context": "toplevel", "object": "client|setinfo", "username": "app",
                  "client-id": "7", "client-addr": "127.0.0.1:5001", "new": "2"}])
    assert _rejected(tb, {100: "api"}) == []


def test_noperm_on_a_key_names_the_command_from_the_client_info() -> None:
    tb = TraceBuilder()
    tb.client("api", pid=100, client_id=7, port=5001)
    _sample(tb)
    tb.at(0.5)
    _sample(tb, errors={"NOPERM": 1}, rejected={"set": 1},
            acl=[{"reason": "key", "context": "toplevel", "object": "orders:1", "username": "app",
                  "client-id": "7", "client-addr": "127.0.0.1:5001", "client-cmd": "set", "new": "1"}])
    [finding] = _rejected(tb, {100: "api"})
    assert finding.culprit is not None and finding.culprit.pid == 100
    assert any("pid 100 (api)" in line and "SET x1" in line for line in finding.evidence), finding.evidence
    assert any("lacks the permission for key orders:1" in line for line in finding.evidence), finding.evidence
