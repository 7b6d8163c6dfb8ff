"""``[plc]``: the reject-gate bridge's servers, part tracking and fail-safe.  No pymodbus import."""

from __future__ import annotations

import os
from typing import Literal
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, field_validator


class PlcConfig(BaseModel):
    """A Modbus TCP and/or OPC UA server through which a PLC triggers parts and reads decisions."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    modbus_listen: str | None = "127.0.0.1:5020"  # HOST:PORT; "" turns Modbus off (502 needs privileges)
    opcua_endpoint: str | None = "opc.tcp://127.0.0.1:4840/edge-inspector/"  # "" turns OPC UA off
    cameras: list[str] = Field(default_factory=list)  # default: every enabled camera, in config order
    trigger: Literal["plc", "frame"] = "plc"  # plc: the PLC writes a part id; frame: every frame is a part
    decision_deadline_ms: float = Field(300.0, gt=0.0, le=60000.0)  # no decision by then: reject
    handshake: bool = True  # results wait for the PLC's acknowledge (queued); false: newest overwrites
    max_pending: int = Field(64, ge=1, le=1000)  # decided results waiting for an acknowledge
    heartbeat_ms: float = Field(500.0, ge=10.0, le=60000.0)

    @field_validator("modbus_listen")
    @classmethod
    def _listen(cls, value: str | None) -> str | None:
        if not value:
            return None
        host, sep, port = value.rpartition(":")
        if not sep or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"expected HOST:PORT (e.g. 0.0.0.0:502), got {value!r}")
        return value

    @field_validator("opcua_endpoint")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if not value:
            return None
        parsed = urlparse(value)
        try:
            port = parsed.port
        except ValueError:
            port = -1
        if parsed.scheme != "opc.tcp" or not parsed.hostname or (port is not None and not 0 < port < 65536):
            raise ValueError(f"expected opc.tcp://HOST:PORT/path, got {value!r}")
        return value


def listen_address(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host or "0.0.0.0", int(port)


def opcua_address(value: str) -> tuple[str, int]:
    parsed = urlparse(value)
    return parsed.hostname or "0.0.0.0", parsed.port or 4840


def check_plc(cfg: PlcConfig, cameras: list[str], publish_verdicts: bool, bind: bool = True) -> list[str]:
    """``check-config`` problems: cameras, verdicts, libraries and ports that cannot be bound."""
    import socket

    problems = []
    if not cfg.modbus_listen and not cfg.opcua_endpoint:
        problems.append("plc: neither modbus_listen nor opcua_endpoint is set: nothing to serve")
    for name in cfg.cameras:
        if name not in cameras:
            problems.append(f"plc.cameras: no enabled camera named {name!r} (cameras: {', '.join(cameras) or 'none'})")
    if not cameras:
        problems.append("plc: the bridge decides parts from cameras, and none is configured")
    if not publish_verdicts:
        problems.append("plc: needs publisher.publish_verdicts = true (one decision per inspected frame)")
    for key, address, module in (("modbus_listen", cfg.modbus_listen and listen_address(cfg.modbus_listen), "pymodbus"),
                                 ("opcua_endpoint", cfg.opcua_endpoint and opcua_address(cfg.opcua_endpoint), "asyncua")):
        if not address:
            continue
        try:
            __import__(module)
        except ImportError:
            problems.append(f"plc.{key}: needs the {module} package (pip install 'edge-inspector[plc]')")
        if not bind:
            continue
        try:
            with socket.create_server(address):
                pass
        except OSError as err:
            reason = os.strerror(err.errno) if err.errno else str(err)
            problems.append(f"plc.{key}: cannot listen on {address[0]}:{address[1]} ({reason})")
    return problems
