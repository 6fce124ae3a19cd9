"""Every observer of a server keeps one protocol (start, pump, stop, abort, what it cannot see), and the shared
stop sequence of the sampling ones holds on a real server: one last sample, stop twice is stop once."""

from __future__ import annotations

import pytest

from redisprobe import trace
from redisprobe.producers.capture import CaptureSession
from redisprobe.producers.observers.clients import ClientPoller
from redisprobe.producers.observers.keyspace import KeyspaceObserver
from redisprobe.producers.observers.monitor_capture import MonitorCapture
from redisprobe.producers.observers.peers import PeerWatcher
from redisprobe.producers.observers.refusals import RefusalSampler
from redisprobe.producers.observers.ttl_sampler import TtlSampler
from redisprobe.targets.url import parse_target

OBSERVERS = (MonitorCapture, KeyspaceObserver, ClientPoller, RefusalSampler, PeerWatcher, TtlSampler)


@pytest.mark.parametrize("kind", OBSERVERS, ids=lambda kind: kind.__name__)
def test_every_observer_says_what_it_cannot_see(kind: type) -> None:
    assert len(kind.BLIND_SPOT) > 20
    for method in ("start", "pump", "stop", "abort"):
        assert callable(getattr(kind, method)), method


def test_a_capture_session_drives_every_observer_through_the_protocol(redis_url: str) -> None:
    writer = trace.TraceWriter(None, trace.Header(command="monitor"))
    session = CaptureSession(parse_target(redis_url), writer)
    assert {type(o) for o in session.observers} == {MonitorCapture, KeyspaceObserver, ClientPoller, RefusalSampler,
                                                     PeerWatcher}
    with session:
        session.pump()
    assert isinstance(session.observers[-1], MonitorCapture)  # stopped last: the others' last looks are captured


def test_a_sampler_takes_one_last_sample_and_stops_once(redis_url: str) -> None:
    events: list[trace.Event] = []
    sampler = RefusalSampler(parse_target(redis_url), events.append, interval=30).start()
    first = [e for e in events if isinstance(e, trace.Refusals)]
    sampler.stop()
    sampler.stop()
    refusals = [e for e in events if isinstance(e, trace.Refusals)]
    assert len(first) == 1 and not first[0].final
    assert len(refusals) == 2 and refusals[-1].final
