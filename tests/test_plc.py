"""The PLC bridge with a real pymodbus client and a real asyncua client acting as the PLC."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path

import pytest

from conftest import free_port
from edge_inspector.events import EventBus, Journal
from edge_inspector.sinks import plc_modbus as mb
from edge_inspector.sinks.plc import PlcBridge, defect_codes
from edge_inspector.sinks.plc_config import PlcConfig
from edge_inspector.sinks.plc_tracker import CODE_DEADLINE, PASS, REJECT
from test_events import visual

pytest.importorskip("pymodbus")
pytest.importorskip("asyncua")
CODES = defect_codes(("ok", "scratch", "crack", "spot", "dent"))


@pytest.fixture(params=["modbus"])
def bridge(tmp_path: Path, request: pytest.FixtureRequest):
    """A bridge serving Modbus, or OPC UA as well (its server takes seconds to start)."""
    opcua = f"opc.tcp://127.0.0.1:{free_port()}/ei/" if request.param == "opcua" else ""
    cfg = PlcConfig(modbus_listen=f"127.0.0.1:{free_port()}", opcua_endpoint=opcua,
                    decision_deadline_ms=300, heartbeat_ms=50)
    plc = PlcBridge(cfg, ["cam0", "cam1"], CODES)
    bus = EventBus("tcp://127.0.0.1:*", Journal(tmp_path / "j.db"), None, heartbeat_s=0, sinks=[plc])
    yield bus, plc, cfg
    bus.close()
    bus.journal.close()


def _regs(client, cam: int = 0) -> list[int]:
    rr = client.read_holding_registers(cam * mb.BLOCK, count=mb.ACK + 1)
    assert not rr.isError(), rr
    return list(rr.registers)


def _wait(client, predicate, timeout: float = 5.0, cam: int = 0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        regs = _regs(client, cam)
        if predicate(regs):
            return regs
        time.sleep(0.01)
    raise AssertionError(f"registers never matched: {regs}")


def _part(regs: list[int]) -> int:
    return (regs[mb.PART_HI] << 16) | regs[mb.PART_LO]


def _trigger(client, part_id: int, cam: int = 0) -> None:
    assert not client.write_registers(cam * mb.BLOCK + mb.TRIGGER_HI, [part_id >> 16, part_id & 0xFFFF]).isError()


def test_modbus_plc_handshake_deadline_and_fault(bridge) -> None:
    from pymodbus.client import ModbusTcpClient

    bus, plc, cfg = bridge
    client = ModbusTcpClient("127.0.0.1", port=int(cfg.modbus_listen.rsplit(":", 1)[1]))
    assert client.connect()
    try:
        regs = _regs(client)
        assert regs[mb.STATUS] & mb.BIT_FAULT and not regs[mb.STATUS] & mb.BIT_RESULT_VALID
        beat = regs[mb.HEARTBEAT]
        bus.publish_status("cam0", "online")
        regs = _wait(client, lambda r: r[mb.STATUS] & mb.BIT_ONLINE and not r[mb.STATUS] & mb.BIT_FAULT)
        assert _wait(client, lambda r: r[mb.HEARTBEAT] != beat)

        # a part announced by the PLC is decided by the next frame captured after it
        stale = visual("scratch", frame=1)  # captured before the trigger: must not decide the part
        time.sleep(0.02)
        _trigger(client, 70001)
        time.sleep(0.02)
        bus.publish_verdict(stale, "verdict")
        bus.publish_verdict(visual("ok", frame=2, defect=False), "verdict")
        regs = _wait(client, lambda r: r[mb.STATUS] & mb.BIT_RESULT_VALID)
        assert (_part(regs), regs[mb.RESULT], regs[mb.CODE]) == (70001, PASS, 0)
        assert regs[mb.RESULT_COUNTER] == 1 and regs[mb.SEQ_LO] == bus.journal.last_seq

        # two parts while the PLC has not acknowledged: the second waits for the acknowledge
        _trigger(client, 70002)
        _trigger(client, 70003)
        time.sleep(0.02)
        bus.publish_verdict(visual("crack", frame=3), "verdict")
        bus.publish_verdict(visual("spot", frame=4), "verdict")
        regs = _wait(client, lambda r: r[mb.PENDING] == 2)
        assert _part(regs) == 70001  # still the unacknowledged one
        for part, code in ((70002, CODES["crack"]), (70003, CODES["spot"])):
            assert not client.write_register(mb.ACK, 1).isError()
            regs = _wait(client, lambda r: r[mb.STATUS] & mb.BIT_RESULT_VALID and _part(r) == part)
            assert (regs[mb.RESULT], regs[mb.CODE], regs[mb.SCORE], regs[mb.ACK]) == (REJECT, code, 910, 0)
        assert not client.write_register(mb.ACK, 1).isError()
        _wait(client, lambda r: not r[mb.STATUS] & mb.BIT_RESULT_VALID)

        # no decision in time (the camera stalls): fail-safe reject, counted
        _trigger(client, 70004)
        t0 = time.monotonic()
        regs = _wait(client, lambda r: r[mb.STATUS] & mb.BIT_RESULT_VALID)
        assert time.monotonic() - t0 >= 0.25
        assert (_part(regs), regs[mb.RESULT], regs[mb.CODE], regs[mb.DEADLINE_MISSES]) == (70004, REJECT, CODE_DEADLINE, 1)

        # the camera goes offline: fault bit; the other camera's block is untouched
        bus.publish_status("cam0", "offline", "unplugged")
        _wait(client, lambda r: r[mb.STATUS] & mb.BIT_FAULT and not r[mb.STATUS] & mb.BIT_ONLINE)
        assert _regs(client, cam=1)[mb.TRIGGERS] == 0
        # only the trigger and acknowledge registers are writable
        assert client.write_register(mb.RESULT, 1).isError()
    finally:
        client.close()
    assert plc.counters()["cam0"]["deadline_misses"] == 1


@pytest.mark.slow
@pytest.mark.parametrize("bridge", ["opcua"], indirect=True)
def test_opcua_client_reads_and_drives_the_same_decisions(bridge) -> None:
    from asyncua import Client, ua

    bus, plc, cfg = bridge
    bus.publish_status("cam1", "online")

    async def scenario() -> dict:
        async with Client(cfg.opcua_endpoint, timeout=5) as client:
            ns = await client.get_namespace_index("urn:edge-inspector:plc")
            cam = await client.nodes.objects.get_child([f"{ns}:EdgeInspector", f"{ns}:cam1"])
            last = await cam.get_child([f"{ns}:ResultManagement", f"{ns}:Results", f"{ns}:LastResult"])

            async def node(path):
                return await (last if path[0] != "Control" and path[0] != "Fault" else cam).get_child(
                    [f"{ns}:{p}" for p in path])

            valid = await last.get_child(f"{ns}:ResultValid")

            async def until(predicate, timeout=5.0):
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline:
                    if predicate(await valid.read_value()):
                        return
                    await asyncio.sleep(0.02)
                raise AssertionError("ResultValid never changed")

            assert await (await node(["Fault"])).read_value() is False
            trigger = await node(["Control", "TriggerPartId"])
            await trigger.write_value(ua.Variant(80001, ua.VariantType.UInt32))
            await asyncio.sleep(0.05)
            bus.publish_verdict(dataclasses.replace(visual("dent", frame=9), source="cam1"), "verdict")
            await until(lambda v: v is True)
            got = {n: await (await last.get_child(f"{ns}:{n}")).read_value()
                   for n in ("PartId", "PartNumber", "Result", "DefectCode", "Score", "ResultState", "ResultId", "IsPartial")}
            ack = await node(["Control", "Acknowledge"])
            await ack.write_value(True)
            await until(lambda v: v is False)
            got["ack_after"] = await ack.read_value()
            return got

    got = asyncio.run(scenario())
    assert got["PartId"] == "80001" and got["PartNumber"] == 80001
    assert (got["Result"], got["DefectCode"], got["ResultState"], got["IsPartial"]) == (REJECT, CODES["dent"], 1, False)
    assert got["Score"] == pytest.approx(0.91) and int(got["ResultId"]) == bus.journal.last_seq
    assert got["ack_after"] is False


def test_port_in_use_is_one_clear_error(tmp_path: Path) -> None:
    import socket

    from edge_inspector.errors import UserError

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(UserError, match=rf"plc.modbus_listen: cannot serve on 127.0.0.1:{port}"):
            PlcBridge(PlcConfig(modbus_listen=f"127.0.0.1:{port}", opcua_endpoint=""), ["cam0"], CODES)


@pytest.mark.parametrize(
    ("plc", "publisher", "expected"),
    [
        ({"trigger": "frame"}, {"publish_verdicts": True}, None),
        ({}, {}, "plc: needs publisher.publish_verdicts = true"),
        ({"cameras": ["nope"]}, {"publish_verdicts": True}, "plc.cameras: no enabled camera named 'nope'"),
        ({"modbus_listen": "502"}, {"publish_verdicts": True}, "plc.modbus_listen: expected HOST:PORT"),
        ({"opcua_endpoint": "http://x:4840"}, {"publish_verdicts": True}, "plc.opcua_endpoint: expected opc.tcp://"),
        ({"decision_deadline_ms": 0}, {"publish_verdicts": True}, "plc.decision_deadline_ms:"),
    ],
)
def test_check_config_plc(tmp_path: Path, capsys: pytest.CaptureFixture[str], plc: dict, publisher: dict,
                          expected: str | None) -> None:
    from test_config import base_tables, expect_problem

    tables = base_tables(tmp_path)
    tables["publisher"].update(publisher)
    tables["plc"] = {"modbus_listen": f"127.0.0.1:{free_port()}",
                     "opcua_endpoint": f"opc.tcp://127.0.0.1:{free_port()}/ei/", **plc}
    expect_problem(tmp_path, capsys, tables, expected)


def test_check_config_plc_port_in_use(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    from test_config import base_tables, expect_problem

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        tables = base_tables(tmp_path)
        tables["publisher"]["publish_verdicts"] = True
        tables["plc"] = {"modbus_listen": f"127.0.0.1:{port}", "opcua_endpoint": ""}
        expect_problem(tmp_path, capsys, tables,
                       f"plc.modbus_listen: cannot listen on 127.0.0.1:{port} (Address already in use)")


@pytest.mark.slow
def test_daemon_serves_every_frame_decision_to_a_modbus_plc(tmp_path: Path) -> None:
    """The daemon with [plc] trigger = "frame": each decision the PLC acknowledges is a verdict
    event of the journal, with its label's defect code."""
    from pymodbus.client import ModbusTcpClient

    from conftest import DaemonConfig, journal_events, start_daemon

    port = free_port()
    cfg = DaemonConfig(tmp_path, cameras=[{"name": "cam0", "uri": "synthetic://surface?seed=5&fps=5&defect_rate=0.5"}],
                       publisher={"publish_verdicts": True},
                       extra={"plc": {"modbus_listen": f"127.0.0.1:{port}", "opcua_endpoint": "", "trigger": "frame"}})
    daemon = start_daemon(cfg.path)
    client = ModbusTcpClient("127.0.0.1", port=port)
    got: list[tuple[int, int, int, int]] = []
    try:
        deadline = time.monotonic() + 30
        while not client.connect() and time.monotonic() < deadline:
            time.sleep(0.2)
        while len(got) < 8 and time.monotonic() < deadline:
            regs = _regs(client)
            if regs[mb.STATUS] & mb.BIT_RESULT_VALID:
                got.append(((regs[mb.SEQ_HI] << 16) | regs[mb.SEQ_LO], _part(regs), regs[mb.RESULT], regs[mb.CODE]))
                assert regs[mb.STATUS] & mb.BIT_ONLINE
                client.write_register(mb.ACK, 1)
            time.sleep(0.01)
    finally:
        client.close()
        daemon.terminate()
        daemon.communicate(timeout=20)
    assert len(got) == 8
    verdicts = {e["seq"]: e for t, e in journal_events(cfg.journal) if t == "verdict.cam0"}
    for seq, part, result, code in got:
        ev = verdicts[seq]
        assert part == ev["frame"] and result == (REJECT if ev["defect"] else PASS)
        assert code == (CODES[ev["label"]] if ev["defect"] else 0)
    assert [g[1] for g in got] == sorted(g[1] for g in got)  # frames in order, none presented twice
