"""check-config never says "ok" to a config that ``run`` would then fail on.

Each case here used to pass ``check-config`` and fail later: a journal path that is a
directory, a file that is not a journal, a damaged journal, a model that matches its sha256 but
does not load, a port out of range.  Each now exits 2 with a line naming its key.
"""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from pathlib import Path

import pytest

from edge_inspector.cli import main

from conftest import ENGINES, free_port, render_toml


def config(tmp_path: Path, publisher: dict | None = None, health: dict | None = None,
           runtime: dict | None = None) -> Path:
    pub = {"endpoint": f"tcp://127.0.0.1:{free_port()}", "catchup_endpoint": f"tcp://127.0.0.1:{free_port()}",
           "journal": str(tmp_path / "j.sqlite3"), **(publisher or {})}
    tables = {"publisher": pub, "health": health or {"listen": f"127.0.0.1:{free_port()}"},
              "runtime": runtime or {}}
    path = tmp_path / "line.toml"
    path.write_text(render_toml(tables, {"camera": [{"name": "cam0", "uri": "synthetic://surface"}],
                                         "microphone": [{"name": "mic0", "uri": "synthetic://machine"}]}))
    return path


def check(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    code = main(["check-config", str(path)])
    captured = capsys.readouterr()
    return code, [line for line in captured.err.splitlines() if line]


def damaged_journal(path: Path) -> Path:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE events (seq INTEGER PRIMARY KEY, topic TEXT NOT NULL, payload BLOB NOT NULL, "
                "created REAL NOT NULL)")
    con.executemany("INSERT INTO events VALUES (?, 'heartbeat', ?, 0)", [(i, b"x" * 300) for i in range(1, 2000)])
    con.commit()
    con.close()
    data = bytearray(path.read_bytes())
    page = 4096
    for offset in range(3 * page, 3 * page + 64):  # scribble over an interior b-tree page's header
        data[offset] = 0xA5
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("case", ["directory", "text file", "foreign database", "damaged"])
def test_unusable_journal_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str) -> None:
    journal = tmp_path / "j.sqlite3"
    expected = {"directory": "is a directory", "text file": "is not an SQLite database",
                "foreign database": "SQLite database of something else", "damaged": "is damaged"}[case]
    if case == "directory":
        journal.mkdir()
    elif case == "text file":
        journal.write_text("these are my notes\n")
    elif case == "foreign database":
        sqlite3.connect(journal).execute("CREATE TABLE parts (id INTEGER)").connection.commit()
    else:
        damaged_journal(journal)
    code, lines = check(config(tmp_path), capsys)
    assert code == 2, lines
    assert any(line.startswith("edge-inspector: publisher.journal: ") and expected in line for line in lines), lines
    if case != "directory":
        assert journal.is_file()  # looked at, never touched


def test_healthy_existing_journal_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edge_inspector.events.journal import Journal

    with Journal(tmp_path / "j.sqlite3") as j:
        j.append("heartbeat", {"schema": "edge-inspector/event/1"})
    code, lines = check(config(tmp_path), capsys)
    assert code == 0, lines


def test_model_that_matches_its_hash_but_does_not_load(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    engines = tmp_path / "engines"
    shutil.copytree(ENGINES, engines, ignore=shutil.ignore_patterns("*.png", "*.md", "*.json"))
    model = engines / "visual_cnn.onnx"
    old = hashlib.sha256(model.read_bytes()).hexdigest()
    model.write_bytes(b"\x08\x07" + b"not a protobuf graph" * 50)
    manifest = engines / "manifest.toml"
    manifest.write_text(manifest.read_text().replace(old, hashlib.sha256(model.read_bytes()).hexdigest()))
    code, lines = check(config(tmp_path, runtime={"engines_dir": str(engines)}), capsys)
    assert code == 2, lines
    assert any("runtime.engines_dir:" in line and "visual_cnn.onnx does not load in ONNX Runtime" in line
               for line in lines), lines


@pytest.mark.parametrize(("section", "values", "key"), [
    ("publisher", {"endpoint": "tcp://127.0.0.1:99999"}, "publisher.endpoint: port '99999'"),
    ("publisher", {"catchup_endpoint": "tcp://127.0.0.1:0"}, "publisher.catchup_endpoint: port '0'"),
    ("health", {"listen": "127.0.0.1:99999"}, "health.listen: expected HOST:PORT with a port in 1-65535"),
])
def test_port_out_of_range_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str], section: str,
                                    values: dict, key: str) -> None:
    path = config(tmp_path, **{section: values}) if section == "publisher" else config(tmp_path, health=values)
    code, lines = check(path, capsys)
    assert code == 2 and any(key in line for line in lines), lines


def test_network_endpoint_without_curve_warns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = config(tmp_path, publisher={"endpoint": f"tcp://0.0.0.0:{free_port()}"})
    code, lines = check(path, capsys)
    assert code == 0, lines
    warnings = [line for line in lines if "warning:" in line]
    assert any("publisher.endpoint" in w and "without CURVE" in w for w in warnings), lines
    assert not any("catchup_endpoint" in w for w in warnings)  # that one stays on 127.0.0.1
    assert not any("health.listen" in w for w in warnings)


def test_network_plc_servers_warn(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Modbus TCP has no authentication and the OPC UA server runs without security: say so."""
    pytest.importorskip("pymodbus")
    pytest.importorskip("asyncua")
    path = config(tmp_path, publisher={"publish_verdicts": True})
    path.write_text(path.read_text() + render_toml({"plc": {
        "modbus_listen": f"0.0.0.0:{free_port()}", "opcua_endpoint": f"opc.tcp://127.0.0.1:{free_port()}/ei/"}}, {}))
    code, lines = check(path, capsys)
    assert code == 0, lines
    warnings = [line for line in lines if "warning:" in line]
    assert len(warnings) == 1 and "plc.modbus_listen" in warnings[0] and "no authentication" in warnings[0], lines
    path.write_text(path.read_text().replace("opc.tcp://127.0.0.1:", "opc.tcp://0.0.0.0:"))
    code, lines = check(path, capsys)
    assert code == 0 and any("plc.opcua_endpoint" in w and "security mode None" in w for w in lines), lines
