"""The ZeroMQ PUB sink: every journalled event, live, as ``[topic, payload]``.

PUB/SUB drops for slow joiners and full queues by design; that is acceptable here because the
journal already holds every event: a subscriber sees the ``seq`` gap and fetches what it missed
from the catch-up server.  For the same reason this sink's hand-off queue may shed its oldest
entries under overload (counted in ``dropped_in_memory``) without losing anything for good.
"""

from __future__ import annotations

import collections
from typing import Any

import zmq

from edge_inspector.events.sink import LiveSink, Record
from edge_inspector.events.zmq_security import ServerSecurity, bind


class ZmqPublisher(LiveSink):
    """Owns the PUB socket on its own thread (ZeroMQ sockets are not thread-safe)."""

    def __init__(
        self,
        security: ServerSecurity,
        endpoint: str,
        sndhwm: int = 10000,
        linger_ms: int = 1000,
        max_queued: int = 10000,
    ) -> None:
        super().__init__("zmq-pub", max_queued=max_queued)
        self._linger_ms = max(0, linger_ms)
        self._pub = security.ctx.socket(zmq.PUB)
        self._pub.setsockopt(zmq.SNDHWM, sndhwm)
        self._pub.setsockopt(zmq.LINGER, self._linger_ms)
        self._pub.setsockopt(zmq.IMMEDIATE, 0)
        security.apply(self._pub)
        try:
            self.endpoint = bind(self._pub, endpoint, "publisher")
        except BaseException:
            self._pub.close(0)
            raise
        self.published = 0
        self.published_by_kind: collections.Counter[str] = collections.Counter()

    def _deliver(self, batch: list[Record]) -> None:
        for rec in batch:
            self._pub.send_multipart((rec.topic.encode("utf-8"), rec.payload), flags=zmq.NOBLOCK, copy=False)
            self.published += 1
            self.published_by_kind[rec.kind] += 1

    def _finish(self) -> None:
        self._pub.close(linger=self._linger_ms)

    def close_unstarted(self) -> None:
        """Release the socket of a publisher whose thread never ran (start-up failed)."""
        self._pub.close(0)

    def counters(self) -> dict[str, Any]:
        return {"published": self.published, "dropped_in_memory": self.dropped_in_memory, "queued": self.queued}
