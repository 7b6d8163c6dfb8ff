"""Checks that need the outside world: files, endpoints, devices, models.

``check-config`` and ``run`` both call :func:`check_environment` after the structural
validation in :mod:`edge_inspector.config`, so a daemon never starts on a config that
cannot work, and every problem is reported at once, each naming its key path.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from edge_inspector.config import Config
from edge_inspector.errors import UserError

MIN_JOURNAL_FREE_BYTES = 32_000_000


def check_environment(cfg: Config, check_devices: bool = True, bind: bool = True) -> list[str]:
    """Every problem found, one line each, starting with the config key it concerns.

    ``check_devices=False`` skips cameras and microphones that are merely absent right now
    (``run`` starts them offline and reconnects); ``bind=False`` skips the endpoint test-binds
    (checking the config of a station that is running and holds those ports).
    """
    from edge_inspector.sources.registry import check_sources

    problems = check_sources("camera", cfg.camera, check_devices) + check_sources("microphone", cfg.microphone, check_devices)
    if bind:
        problems += _check_publisher(cfg)
    from edge_inspector.events.curve import check_curve_config

    problems += check_curve_config(cfg.publisher.curve_secret_key, cfg.publisher.curve_allowed_clients)
    problems += _check_journal(cfg, free_space=check_devices)  # run journals what fits, then stops
    problems += _check_models(cfg, load=check_devices)  # run loads them itself, right after
    from edge_inspector.sinks import check_sinks
    from edge_inspector.snapshots import check_snapshots

    problems += check_snapshots(cfg)
    problems += check_http_access(cfg)
    problems += check_sinks(cfg, bind)
    return problems


def _check_listen(listen: str) -> str | None:
    """``host:port`` that a TCP server can bind right now."""
    import socket

    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        return f"expected HOST:PORT (e.g. 127.0.0.1:9108), got {listen!r}"
    try:
        with socket.create_server((host or "127.0.0.1", int(port))):
            return None
    except OSError as exc:
        return f"cannot listen on {listen}: {exc.strerror or exc}"


def _check_publisher(cfg: Config) -> list[str]:
    from edge_inspector.events.bus import check_endpoint_bindable

    problems = []
    pub = cfg.publisher
    for key, endpoint in (("publisher.endpoint", pub.endpoint), ("publisher.catchup_endpoint", pub.catchup_endpoint)):
        if endpoint:
            msg = check_endpoint_bindable(endpoint)
            if msg:
                problems.append(f"{key}: {msg}")
    if cfg.health.listen:
        msg = _check_listen(cfg.health.listen)
        if msg:
            problems.append(f"health.listen: {msg}")
    return problems


def _check_journal(cfg: Config, free_space: bool = True) -> list[str]:
    problems = []
    pub = cfg.publisher
    if pub.catchup_endpoint and pub.catchup_endpoint == pub.endpoint:
        problems.append("publisher.catchup_endpoint: must differ from publisher.endpoint")
    journal = pub.journal
    if journal.is_dir():
        return problems + [f"publisher.journal: {journal} is a directory; name a file in it, e.g. {journal / 'journal.sqlite3'}"]
    if journal.exists():
        msg = _existing_journal_problem(journal)
        if msg:
            problems.append(f"publisher.journal: {msg}")
    parent = journal.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        problems.append(f"publisher.journal: cannot create {journal} ({parent} is not a directory)")
    elif not os.access(parent, os.W_OK | os.X_OK):
        problems.append(f"publisher.journal: cannot create {journal} ({parent} is not writable)")
    elif free_space:
        st = os.statvfs(parent)
        free = st.f_bavail * st.f_frsize
        if free < MIN_JOURNAL_FREE_BYTES:
            problems.append(f"publisher.journal: only {free / 1e6:.1f} MB free on the file system of {parent} "
                            f"(at least {MIN_JOURNAL_FREE_BYTES // 1_000_000} MB needed to journal events)")
    return problems


def _existing_journal_problem(path: Path) -> str | None:
    """Why an existing journal file cannot be used (not SQLite, another database, damaged), else None."""
    import sqlite3

    from edge_inspector.events.journal import JOURNAL_COLUMNS

    if not path.is_file():
        return f"{path} is not a regular file"
    if not os.access(path, os.R_OK | os.W_OK):
        return f"{path} is not readable and writable by this user"
    if path.stat().st_size == 0:
        return None  # an empty file becomes a new journal
    with open(path, "rb") as fh:
        magic = fh.read(16)
    if magic != b"SQLite format 3\x00":
        return f"{path} is not an SQLite database (an edge-inspector journal); move it away or choose another path"
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2.0)
        try:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if tables and "events" not in tables:
                return f"{path} is an SQLite database of something else (tables: {', '.join(sorted(tables)[:5])})"
            if "events" in tables:
                cols = [r[1] for r in con.execute("PRAGMA table_info(events)")]
                if cols != JOURNAL_COLUMNS:
                    return f"{path} has an 'events' table with columns {cols}, expected {JOURNAL_COLUMNS}"
            verdict = con.execute("PRAGMA quick_check(1)").fetchone()[0]
            if verdict != "ok":
                verdict = "; ".join(part.strip(" *") for part in str(verdict).splitlines() if part.strip(" *"))
                return f"{path} is damaged (SQLite quick_check: {verdict}); move it away and keep it for analysis"
        finally:
            con.close()
    except sqlite3.DatabaseError as err:
        return f"{path} cannot be read as a journal ({err})"
    return None


def _check_models(cfg: Config, load: bool = True) -> list[str]:
    from edge_inspector.manifest import load_manifest

    try:
        manifest = load_manifest(cfg.runtime.engines_dir)
    except UserError as exc:
        return [f"runtime.engines_dir: {exc}"]
    problems = []
    if cfg.cameras and not manifest.entries("visual"):
        problems.append("runtime.engines_dir: the manifest has no visual model but cameras are configured")
    if cfg.microphones and not manifest.entries("acoustic"):
        problems.append("runtime.engines_dir: the manifest has no acoustic model but microphones are configured")
    acoustic = manifest.classifier("acoustic")
    if acoustic is not None:
        for i, mic in enumerate(cfg.microphone):
            onset = acoustic.onset if mic.onset is None else mic.onset
            offset = acoustic.offset if mic.offset is None else mic.offset
            if offset > onset:
                problems.append(
                    f"microphone[{i}].offset: {offset} is above the onset {onset} (the model's "
                    f"onset/offset are {acoustic.onset}/{acoustic.offset}); offset must be <= onset"
                )
    if manifest.anomaly("acoustic") is None:
        for i, mic in enumerate(cfg.microphone):
            if mic.anomaly_threshold is not None:
                problems.append(f"microphone[{i}].anomaly_threshold: the engines directory has no acoustic anomaly "
                                "model (make one with `edge-inspector learn acoustic`)")
    if manifest.anomaly("visual") is None:
        for i, cam in enumerate(cfg.camera):
            if cam.anomaly_threshold is not None:
                problems.append(f"camera[{i}].anomaly_threshold: the engines directory has no visual anomaly model "
                                "(make one with `edge-inspector learn visual`)")
    if load:
        problems += _check_models_load(cfg, manifest)
    if cfg.runtime.backend == "tensorrt":
        from edge_inspector.runtime.tensorrt import tensorrt_available

        ok, reason = tensorrt_available()
        if not ok:
            problems.append(f"runtime.backend: TensorRT is not usable here: {reason}")
    return problems


def _check_models_load(cfg: Config, manifest: Any) -> list[str]:
    """Load each model the config uses in ONNX Runtime: a file can match its sha256 and still not parse."""
    import onnxruntime as ort

    needed = [(m, "visual") for m in manifest.entries("visual") if cfg.cameras]
    needed += [(m, "acoustic") for m in manifest.entries("acoustic") if cfg.microphones]
    problems = []
    files = [(manifest.path_of(m), kind) for m, kind in needed]
    files += [(manifest.directory / q.file, kind) for m, kind in needed for q in getattr(m, "int8", ())
              if q.target == "onnxruntime"]  # the TensorRT file is checked by build-engines
    for path, kind in files:
        options = ort.SessionOptions()
        options.log_severity_level = 4  # its own complaint is in the exception
        options.intra_op_num_threads = 1
        try:
            ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - ONNX Runtime raises several unrelated types
            reason = str(exc).strip().splitlines()[-1][:200] if str(exc).strip() else type(exc).__name__
            problems.append(f"runtime.engines_dir: the {kind} model {path.name} does not load in ONNX Runtime ({reason})")
    return problems


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and localhost; ``*``, ``0.0.0.0`` and any other address serve the network."""
    import ipaddress

    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # an interface name or a host name: reachable from elsewhere


def serves_network(listen: str) -> bool:
    """``HOST:PORT`` of a TCP server that other hosts can reach (an empty host is every interface)."""
    return not is_loopback(listen.rpartition(":")[0])


def exposure_warnings(cfg: Config) -> list[str]:
    """Every endpoint that serves the network without authenticated encryption, and what it exposes.

    The ZeroMQ sockets can have CURVE; the HTTP server (its token travels in the clear) and the
    PLC protocols as this bridge speaks them (Modbus TCP has no authentication, OPC UA runs with
    security mode None) cannot, so a non-loopback address there is warned about as well.
    """
    warnings = []
    pub = cfg.publisher
    curve = bool(pub.curve_secret_key)
    for key, endpoint in (("publisher.endpoint", pub.endpoint), ("publisher.catchup_endpoint", pub.catchup_endpoint)):
        if not endpoint or not endpoint.startswith("tcp://"):
            continue
        host = endpoint[len("tcp://"):].rpartition(":")[0]
        if is_loopback(host):
            continue
        if not curve:
            warnings.append(f"{key}: {endpoint} serves the network without CURVE: anyone who can reach it "
                            "reads every event; set publisher.curve_secret_key and curve_allowed_clients")
        elif pub.curve_allowed_clients == "*":
            warnings.append(f"{key}: {endpoint} lets any CURVE client in (curve_allowed_clients = \"*\"): "
                            "events are encrypted but anyone who makes a key pair reads them")
    listen = cfg.health.listen
    if listen and serves_network(listen):
        warnings.append(f"health.listen: {listen} serves the network over plain HTTP: its token, pictures and "
                        "events cross it unencrypted; keep it on a trusted network or behind a TLS proxy")
    plc = cfg.plc
    if plc is not None and plc.enabled:
        if plc.modbus_listen and serves_network(plc.modbus_listen):
            warnings.append(f"plc.modbus_listen: {plc.modbus_listen} serves the network with Modbus TCP, which has no "
                            "authentication: any host there can write triggers and acknowledgements; keep it on "
                            "the PLC's own network")
        if plc.opcua_endpoint and not is_loopback(_opcua_host(plc.opcua_endpoint)):
            warnings.append(f"plc.opcua_endpoint: {plc.opcua_endpoint} serves the network with OPC UA security mode "
                            "None: any client there reads decisions and writes acknowledgements; keep it on the "
                            "PLC's own network")
    return warnings


def _opcua_host(endpoint: str) -> str:
    from edge_inspector.sinks.plc_config import opcua_address

    return opcua_address(endpoint)[0]


def check_http_access(cfg: Config) -> list[str]:
    """A network ``health.listen`` needs a token; a ``token_file`` must hold a usable one."""
    from edge_inspector.web.access import read_token

    health = cfg.health
    if not health.listen:
        return []
    if health.token_file is None:
        if serves_network(health.listen):
            return [f"health.token_file: required because health.listen = {health.listen!r} serves other hosts "
                    "(pictures, live video and events need a token there; create one with "
                    "'openssl rand -hex 32 > /etc/edge-inspector/http.token'), or listen on 127.0.0.1"]
        return []
    try:
        read_token(health.token_file)
    except UserError as exc:
        return [str(exc)]
    return []
