"""The PLC bridge: a sink that serves decisions to the PLC driving the reject gate.

It runs one asyncio event loop on its own thread, hosting the Modbus TCP server and/or the OPC
UA server over one set of :class:`CameraTracker` objects.  The dispatcher's ``offer`` only
appends to a bounded queue and wakes the loop, so a PLC that stops polling, or a slow OPC UA
client, never holds up inspection.  The servers are bound when the bridge is built, so a port
in use is reported at start-up, not later.  A failure of the loop is counted and the loop starts
again (servers rebound, decisions kept): the PLC sees a dropped connection and a heartbeat that
pauses, never a frozen register block that still looks alive.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import threading
import time
from typing import Any

from edge_inspector.errors import UserError
from edge_inspector.events.sink import Record, Sink
from edge_inspector.sinks.plc_config import PlcConfig, listen_address
from edge_inspector.sinks.plc_tracker import CameraTracker
from edge_inspector.supervision import ThreadHealth

log = logging.getLogger(__name__)

MAX_QUEUED = 10000


def defect_codes(labels: tuple[str, ...]) -> dict[str, int]:
    """Defect code = the label's index in the visual classifier's labels; ``anomaly`` next."""
    codes = {label: i for i, label in enumerate(labels)}
    codes.setdefault("anomaly", len(labels))
    return codes


class PlcBridge(Sink):
    """Decisions per camera on Modbus TCP and/or OPC UA."""

    def __init__(self, cfg: PlcConfig, cameras: list[str], codes: dict[str, int],
                 health: ThreadHealth | None = None) -> None:
        super().__init__("plc", health)
        self.cfg = cfg
        names = cfg.cameras or cameras
        self.trackers = [CameraTracker(n, i, cfg.trigger == "frame", cfg.decision_deadline_ms / 1000.0,
                                       cfg.handshake, cfg.max_pending, codes) for i, n in enumerate(names)]
        self._by_name = {t.name: t for t in self.trackers}
        self._queue: collections.deque[Record] = collections.deque()
        self._lock = threading.Lock()
        self._woken = False
        self.dropped_in_memory = 0
        self.heartbeat = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._ready = threading.Event()
        self._start_error: str | None = None
        self.modbus: Any = None
        self.opcua: Any = None
        super().start()  # bind now: a port in use is a start-up error
        self._ready.wait(30)
        if self._start_error or not self._ready.is_set():
            self.stop()
            self.join(5)
            raise UserError(self._start_error or "plc: the bridge's servers did not start within 30 s")

    def start(self) -> None:
        """Already running since construction."""

    def stop(self) -> None:
        super().stop()
        self._kick()

    def offer(self, record: Record) -> None:
        if not (record.topic.startswith("verdict.") or record.topic.startswith("status.")):
            return
        with self._lock:
            if len(self._queue) >= MAX_QUEUED:
                self._queue.popleft()
                self.dropped_in_memory += 1
            self._queue.append(record)
        self._kick()

    def _kick(self) -> None:
        with self._lock:
            if self._woken or self._loop is None or self._wake is None:
                return
            self._woken = True
        try:
            self._loop.call_soon_threadsafe(self._wake.set)
        except RuntimeError:  # the loop has closed: the bridge is stopping
            pass

    def counters(self) -> dict[str, Any]:
        return {t.name: {"online": t.online, "triggers": t.triggers, "results": t.result_counter,
                         "deadline_misses": t.deadline_misses, "pending": len(t.waiting), "overflows": t.overflows}
                for t in self.trackers}

    # -- the event loop thread ---------------------------------------------------------------
    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._serve(loop))
        finally:
            loop.close()

    async def _serve(self, loop: asyncio.AbstractEventLoop) -> None:
        from edge_inspector.sinks.plc_modbus import ModbusFace
        from edge_inspector.sinks.plc_opcua import OpcUaFace

        self._wake = asyncio.Event()
        with self._lock:
            self._woken = False  # a kick while a failed loop was being replaced went nowhere
        try:
            if self.cfg.modbus_listen:
                self.modbus = ModbusFace(self.trackers, lambda: self.heartbeat, self._kick)
                await self._bind("plc.modbus_listen", self.cfg.modbus_listen, self.modbus.start(*listen_address(self.cfg.modbus_listen)))
            if self.cfg.opcua_endpoint:
                self.opcua = OpcUaFace(self.trackers, lambda: self.heartbeat, self._kick)
                await self._bind("plc.opcua_endpoint", self.cfg.opcua_endpoint, self.opcua.start(self.cfg.opcua_endpoint))
        except UserError as err:
            await self._close_faces()
            if self._ready.is_set():  # restarting after a failure: supervision retries
                raise
            self._start_error = str(err)
            self._ready.set()
            return
        self._loop = loop
        self._ready.set()
        log.info("plc bridge: %s for camera(s) %s", ", ".join(
            x for x in (self.cfg.modbus_listen and f"Modbus TCP on {self.cfg.modbus_listen}",
                        self.cfg.opcua_endpoint and f"OPC UA on {self.cfg.opcua_endpoint}") if x),
            ", ".join(t.name for t in self.trackers))
        period = self.cfg.heartbeat_ms / 1000.0
        next_beat = time.monotonic() + period
        try:
            while not self._stopping:
                waits = [next_beat] + [t.parts[0][2] for t in self.trackers if t.parts]
                try:
                    await asyncio.wait_for(self._wake.wait(), max(0.0, min(waits) - time.monotonic()))
                except asyncio.TimeoutError:
                    pass
                with self._lock:
                    self._wake.clear()
                    self._woken = False
                    batch = list(self._queue)
                    self._queue.clear()
                for rec in batch:
                    self._route(rec)
                now = time.monotonic()
                for t in self.trackers:
                    t.tick(now)
                if now >= next_beat:
                    self.heartbeat = (self.heartbeat + 1) & 0xFFFFFFFF
                    next_beat = now + period
                if self.opcua is not None:
                    await self.opcua.refresh()
        finally:
            await self._close_faces()

    async def _bind(self, key: str, where: str, starting: Any) -> None:
        try:
            await starting
        except (OSError, RuntimeError) as err:
            raise UserError(f"{key}: cannot serve on {where} ({getattr(err, 'strerror', None) or err})") from None

    async def _close_faces(self) -> None:
        for face in (self.modbus, self.opcua):
            if face is not None:
                try:
                    await face.stop()
                except Exception as err:  # shutting down: report, go on with the other
                    log.warning("plc bridge: stopping %s: %s", type(face).__name__, err)

    def _route(self, rec: Record) -> None:
        kind, _, source = rec.topic.partition(".")
        tracker = self._by_name.get(source)
        if tracker is None:
            return
        ev = json.loads(rec.payload)
        if kind == "verdict" and ev.get("kind") == "visual":
            tracker.on_verdict(ev)
        elif kind == "status":
            tracker.on_status(str(ev.get("state", "")))
