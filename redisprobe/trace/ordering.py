"""Events in time order, streaming: observers write from their own threads, so a trace is nearly sorted only."""

from __future__ import annotations

from collections.abc import Iterator

from redisprobe.trace.schema import Event

REORDER_WINDOW = 5.0
"""Seconds by which events may reach the trace out of time order: observers write from their own threads
(keyspace events at once, MONITOR lines after the spool is parsed), so the file is only nearly sorted."""


def time_ordered(events: Iterator[Event] | list[Event], window: float = REORDER_WINDOW) -> Iterator[Event]:
    """Events in time order, streaming: a buffer holds `window` seconds of events (memory stays small).

    Exactly a heap of (t, arrival) released once `window` older than the newest event, but while events
    arrive in order (the usual case) the buffer is a plain FIFO; the heap is only built for out-of-order runs.
    """
    import heapq
    from collections import deque

    heappush, heappop = heapq.heappush, heapq.heappop
    fifo: deque[Event] = deque()  # sorted by (t, arrival): events came in order
    append, popleft = fifo.append, fifo.popleft
    heap: list[tuple[float, int, Event]] | None = None  # out-of-order mode
    index = 0
    last = float("-inf")  # t of the newest event in `fifo`
    newest = float("-inf")
    for event in events:
        t = event.t
        if t > newest:  # max(newest, t), without the call
            newest = t
        if heap is None:
            if not fifo or t >= last:
                append(event)
                last = t
                limit = newest - window
                while fifo and fifo[0].t < limit:
                    yield popleft()
                continue
            heap = [(e.t, n, e) for n, e in enumerate(fifo)]  # sorted, so already a heap
            index = len(heap)
            fifo.clear()
        heappush(heap, (t, index, event))
        index += 1
        limit = newest - window
        while heap and heap[0][0] < limit:
            yield heappop(heap)[2]
        if not heap:
            heap = None
    if heap is not None:
        while heap:
            yield heappop(heap)[2]
    else:
        while fifo:
            yield popleft()
