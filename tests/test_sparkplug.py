"""Sparkplug B against a real mosquitto, decoded with the published schema compiled by protoc."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from edge_inspector.sinks.sparkplug_payload import SCHEMA_DIR
from mqtt_broker import Broker, Collector, broker  # noqa: F401  (fixture)

PROTOC = shutil.which("protoc")
needs_protoc = pytest.mark.skipif(PROTOC is None, reason="protoc is not installed (./setup.sh --dev installs it)")


def _compiled(tmp_path: Path) -> Any:
    """The schema compiled here by protoc, independently of the shipped descriptor."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    out = tmp_path / "schema.desc"
    subprocess.run([PROTOC, f"--proto_path={SCHEMA_DIR}", f"--descriptor_set_out={out}", "sparkplug_b.proto"],
                   check=True)
    files = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    pool = descriptor_pool.DescriptorPool()
    for f in files.file:
        pool.Add(f)
    return files, message_factory.GetMessageClass(pool.FindMessageTypeByName("org.eclipse.tahu.protobuf.Payload"))


@needs_protoc
def test_shipped_descriptor_is_the_published_schema(tmp_path: Path) -> None:
    from google.protobuf import descriptor_pb2

    files, _ = _compiled(tmp_path)
    shipped = descriptor_pb2.FileDescriptorSet.FromString((SCHEMA_DIR / "sparkplug_b.desc").read_bytes())
    assert shipped == files


def _metrics(payload: Any) -> dict[str, Any]:
    return {m.name: getattr(m, m.WhichOneof("value")) for m in payload.metrics}


@needs_protoc
@pytest.mark.slow
def test_edge_node_births_data_rebirth_and_death(tmp_path: Path, surfaces: Any, broker: Broker) -> None:
    from conftest import DaemonConfig, start_daemon

    _, Payload = _compiled(tmp_path)
    cfg = DaemonConfig(tmp_path, cameras=[{"name": "cam0", "uri": "synthetic://surface?seed=3&fps=8&defect_rate=0.6"}],
                       extra={"mqtt": {"url": broker.url, "topic_prefix": "edge-inspector/line1", "sparkplug": True,
                                       "group": "plant", "edge_node": "line1"}})
    sub = Collector(broker, "spBv1.0/#")
    base = "spBv1.0/plant"

    def decoded(kind: str, suffix: str = "") -> list[Any]:
        topic = f"{base}/{kind}/line1{suffix}"
        return [Payload.FromString(p) for t, p, _ in sub.snapshot() if t == topic]

    daemon = start_daemon(cfg.path)
    try:
        assert sub.wait_for(lambda m: any(_metrics(p).get("Inspection/Defect Count", 0) >= 1
                                          for p in decoded("DDATA", "/cam0")), 30)
        births = decoded("NBIRTH")
        assert len(births) == 1 and births[0].seq == 0
        bd_seq = _metrics(births[0])["bdSeq"]
        assert _metrics(births[0])["Node Control/Rebirth"] is False
        dbirth = decoded("DBIRTH", "/cam0")
        assert len(dbirth) == 1 and {"Inspection/Last Label", "Inspection/Score", "Inspection/Defect Count",
                                     "Inspection/Latency ms", "Online"} <= set(_metrics(dbirth[0]))
        data = decoded("DDATA", "/cam0")
        # the camera goes online once: in the DBIRTH when it was online before the node connected,
        # else in a DDATA after it
        assert any(_metrics(p).get("Online") is True for p in [dbirth[0], *data])
        labels = {_metrics(p).get("Inspection/Last Label") for p in data} - {None}
        assert labels & {"scratch", "crack", "spot", "dent"}
        seqs = [p.seq for p in [births[0], dbirth[0], *data]]
        assert seqs[:3] == [0, 1, 2]  # one sequence across node and device messages

        cmd = Payload(timestamp=int(time.time() * 1000))
        m = cmd.metrics.add()
        m.name, m.datatype, m.boolean_value = "Node Control/Rebirth", 11, True
        sub.client.publish(f"{base}/NCMD/line1", cmd.SerializeToString(), qos=1)
        assert sub.wait_for(lambda m: len(decoded("NBIRTH")) == 2 and len(decoded("DBIRTH", "/cam0")) == 2, 10)
        again = decoded("NBIRTH")[1]
        assert again.seq == 0 and _metrics(again)["bdSeq"] == bd_seq
    finally:
        daemon.kill()  # no clean stop: the broker must publish the last will
        daemon.wait(10)
    try:
        assert sub.wait_for(lambda m: len(decoded("NDEATH")) == 1, 10)
        assert _metrics(decoded("NDEATH")[0])["bdSeq"] == bd_seq
    finally:
        sub.close()
