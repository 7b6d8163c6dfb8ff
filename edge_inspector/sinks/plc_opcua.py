"""The OPC UA face of the PLC bridge (asyncua server), named after OPC 40100 where it fits.

Node tree (namespace ``urn:edge-inspector:plc``)::

    Objects/EdgeInspector/<camera>/
        Heartbeat                      UInt32
        Fault                          Boolean    the camera is offline
        VisionStateMachine/CurrentState  String   "Operational" | "Error"
        ResultManagement/Results/LastResult/
            ResultId        String   the verdict event's seq
            PartId          String   the part id (or frame index) as decimal text
            PartNumber      UInt32   the same as a number
            ResultState     Int32    1 completed, 3 aborted (no decision before the deadline)
            IsPartial       Boolean  false
            CreationTime    DateTime
            Result          Int16    1 pass, 2 reject
            DefectCode      UInt16   as on Modbus
            Score           Double   0..1
            ResultValid     Boolean
            ResultCounter   UInt32
        Control/TriggerPartId  UInt32   written by the PLC: a part passes the camera
        Control/Acknowledge    Boolean  written true by the PLC: result read
        Statistics/DeadlineMisses, Statistics/PendingResults  UInt32

Writes from clients arrive through the server's post-write callback; the bridge refreshes the
nodes after every change of a tracker (``version``), on the same event loop.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any, Callable

from edge_inspector.sinks.plc_tracker import CameraTracker

log = logging.getLogger(__name__)

NAMESPACE = "urn:edge-inspector:plc"


class OpcUaFace:
    """Builds and refreshes the node tree; created and run on the bridge's event loop."""

    def __init__(self, trackers: list[CameraTracker], heartbeat: Callable[[], int],
                 on_change: Callable[[], None]) -> None:
        self.trackers = trackers
        self._heartbeat = heartbeat
        self._on_change = on_change
        self.server: Any = None
        self._nodes: list[dict[str, Any]] = []
        self._writable: dict[Any, tuple[int, str]] = {}
        self._seen: list[int] = [-1] * len(trackers)
        self._last_heartbeat = -1

    async def start(self, endpoint: str) -> None:
        from asyncua import Server, ua
        from asyncua.common.callback import CallbackType

        # NoSecurity is this bridge's deliberate choice (below); asyncua warns about it at every start
        logging.getLogger("asyncua.server.server").setLevel(logging.ERROR)
        server = Server()
        await server.init()
        server.set_endpoint(endpoint)
        server.set_server_name("edge-inspector")
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        ns = await server.register_namespace(NAMESPACE)
        root = await server.nodes.objects.add_object(ns, "EdgeInspector")
        V = ua.VariantType
        for i, t in enumerate(self.trackers):
            cam = await root.add_object(ns, t.name)
            state = await cam.add_object(ns, "VisionStateMachine")
            results = await (await cam.add_object(ns, "ResultManagement")).add_object(ns, "Results")
            last = await results.add_object(ns, "LastResult")
            control = await cam.add_object(ns, "Control")
            stats = await cam.add_object(ns, "Statistics")
            spec = {
                "Heartbeat": (cam, 0, V.UInt32), "Fault": (cam, True, V.Boolean),
                "CurrentState": (state, "Error", V.String),
                "ResultId": (last, "", V.String), "PartId": (last, "", V.String), "PartNumber": (last, 0, V.UInt32),
                "ResultState": (last, 0, V.Int32), "IsPartial": (last, False, V.Boolean),
                "CreationTime": (last, datetime.now(timezone.utc), V.DateTime), "Result": (last, 0, V.Int16),
                "DefectCode": (last, 0, V.UInt16), "Score": (last, 0.0, V.Double),
                "ResultValid": (last, False, V.Boolean), "ResultCounter": (last, 0, V.UInt32),
                "TriggerPartId": (control, 0, V.UInt32), "Acknowledge": (control, False, V.Boolean),
                "DeadlineMisses": (stats, 0, V.UInt32), "PendingResults": (stats, 0, V.UInt32),
            }
            nodes = {}
            for name, (parent, value, vtype) in spec.items():
                nodes[name] = await parent.add_variable(ns, name, ua.Variant(value, vtype))
            for name in ("TriggerPartId", "Acknowledge"):
                await nodes[name].set_writable()
                self._writable[nodes[name].nodeid] = (i, name)
            self._nodes.append(nodes)
        server.subscribe_server_callback(CallbackType.PostWrite, self._post_write)
        await server.start()
        self.server = server

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()

    async def _post_write(self, event: Any, dispatcher: Any) -> None:
        changed = False
        for item, status in zip(event.request_params.NodesToWrite, event.response_params or []):
            target = self._writable.get(item.NodeId)
            if target is None or not status.is_good():
                continue
            cam, name = target
            value = item.Value.Value.Value
            if name == "TriggerPartId":
                self.trackers[cam].trigger(int(value))
            elif value:
                self.trackers[cam].acknowledge()
                await self._nodes[cam]["Acknowledge"].write_value(False)
            changed = True
        if changed:
            self._on_change()

    async def refresh(self) -> None:
        """Write the trackers' state into the nodes where it changed."""
        from asyncua import ua

        beat = self._heartbeat()
        for i, t in enumerate(self.trackers):
            nodes = self._nodes[i]
            if beat != self._last_heartbeat:
                await nodes["Heartbeat"].write_value(ua.Variant(beat & 0xFFFFFFFF, ua.VariantType.UInt32))
            if self._seen[i] == t.version:
                continue
            self._seen[i] = t.version
            V = ua.VariantType
            d = t.current
            values: list[tuple[str, Any, Any]] = []
            if d is not None:  # the result first, its valid flag last: a reader never sees a stale pair
                values += [("ResultId", str(d.seq), V.String), ("PartId", str(d.part_id), V.String),
                           ("PartNumber", d.part_id, V.UInt32), ("ResultState", d.state, V.Int32),
                           ("CreationTime", datetime.fromtimestamp(d.created, timezone.utc), V.DateTime),
                           ("Result", d.result, V.Int16), ("DefectCode", d.code, V.UInt16),
                           ("Score", d.score_milli / 1000.0, V.Double)]
            values += [
                ("Fault", t.fault, V.Boolean), ("CurrentState", "Error" if t.fault else "Operational", V.String),
                ("DeadlineMisses", t.deadline_misses & 0xFFFFFFFF, V.UInt32),
                ("PendingResults", len(t.waiting), V.UInt32),
                ("ResultCounter", t.result_counter, V.UInt32), ("ResultValid", t.result_valid, V.Boolean)]
            for name, value, vtype in values:
                await nodes[name].write_value(ua.Variant(value, vtype))
        self._last_heartbeat = beat
