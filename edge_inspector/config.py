"""Typed configuration loaded from TOML.

Every section is a pydantic model that rejects unknown keys (a typo such as ``treshold`` is an
error, not a silently ignored line).  Errors are reported one per line with the key path as a
person would write it (``camera[1].uri: …``), and ``check-config`` adds the checks that need
the outside world: files that exist, endpoints that can be bound, devices that are present.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from edge_inspector import DEFAULT_CONFIG
from edge_inspector.errors import UserError
from edge_inspector.inspectors.config import RuntimeConfig
from edge_inspector.sinks.mqtt_config import MqttConfig
from edge_inspector.sinks.plc_config import PlcConfig
from edge_inspector.snapshots.config import SnapshotConfig
from edge_inspector.sources.registry import is_tag, keys_elsewhere, settings_type
from edge_inspector.sources.settings import CameraSettings, MicrophoneSettings
from edge_inspector.tomlcompat import tomllib

class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


#: one [[camera]] / [[microphone]] table: the settings of its kind (sources/kinds), chosen by the URI
CameraConfig = settings_type("camera")
MicrophoneConfig = settings_type("microphone")


class PublisherConfig(_Section):
    endpoint: str = "tcp://127.0.0.1:5556"
    catchup_endpoint: str | None = "tcp://127.0.0.1:5557"
    journal: Path = Field(default_factory=lambda: default_state_dir() / "journal.sqlite3")
    retention_events: int = Field(1_000_000, ge=1000)
    publish_verdicts: bool = False  # every inspection on verdict.<source>
    verdict_window_s: float = Field(1.0, gt=0.0, le=60.0)  # microphones: one verdict per window
    heartbeat_s: float = Field(1.0, gt=0.0, le=60.0)
    sndhwm: int = Field(10000, ge=1)
    linger_ms: int = Field(1000, ge=0, le=60000)
    journal_sync: Literal["NORMAL", "FULL"] = "NORMAL"  # FULL: survives power loss, slower commits
    # CURVE: the path of this daemon's NAME.key_secret (edge-inspector keys new), and the directory of
    # the client NAME.key files it lets in ("*": any client with a key pair, i.e. no authentication)
    curve_secret_key: str | None = None
    curve_allowed_clients: str | None = None

    @field_validator("endpoint", "catchup_endpoint")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value == "":
            return None  # catchup_endpoint = "" disables catch-up
        if value is not None and not re.match(r"^(tcp|ipc|inproc)://.+", value):
            raise ValueError("must look like tcp://HOST:PORT, ipc:///path or inproc://name")
        if value is not None and value.startswith("tcp://"):
            port = value.rpartition(":")[2]
            if port != "*" and not valid_port(port):
                raise ValueError(f"port {port!r} in {value!r} is not a TCP port (1-65535, or * for any free port)")
        return value


class HealthConfig(_Section):
    listen: str | None = "127.0.0.1:9108"  # the HTTP server (status page, preview, snapshots, metrics); None disables
    token_file: Path | None = None  # bearer token, required when listen serves other hosts
    log_format: Literal["auto", "text", "json"] = "auto"
    status_interval_s: float = Field(10.0, gt=0.0)  # periodic log line when not on a terminal
    preview_fps: float = Field(5.0, gt=0.0, le=30.0)  # live preview frames per second, per camera
    preview_width: int = Field(960, ge=160, le=8192)  # the preview is shrunk to this width

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str | None) -> str | None:
        if value == "":
            return None  # listen = "" turns the endpoints off
        if value is not None:
            _host, sep, port = value.rpartition(":")
            if not sep or not valid_port(port):
                raise ValueError(f"expected HOST:PORT with a port in 1-65535 (e.g. 127.0.0.1:9108), got {value!r}")
        return value


def valid_port(text: str) -> bool:
    """A TCP port number a server can listen on: 1-65535."""
    return text.isdigit() and 0 < int(text) < 65536


class Config(_Section):
    camera: list[CameraConfig] = Field(default_factory=list)  # type: ignore[valid-type]
    microphone: list[MicrophoneConfig] = Field(default_factory=list)  # type: ignore[valid-type]
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    publisher: PublisherConfig = Field(default_factory=PublisherConfig)
    health: HealthConfig = Field(default_factory=HealthConfig)
    mqtt: MqttConfig | None = None
    plc: PlcConfig | None = None
    snapshots: SnapshotConfig = Field(default_factory=SnapshotConfig)
    source_path: Path | None = Field(None, exclude=True)

    @model_validator(mode="after")
    def _unique_names(self) -> "Config":
        seen: dict[str, str] = {}
        for section in ("camera", "microphone"):
            for i, src in enumerate(getattr(self, section)):
                where = f"{section}[{i}]"
                if src.name in seen:
                    raise ValueError(f"{where}.name: duplicate source name {src.name!r} (also {seen[src.name]})")
                seen[src.name] = where
        if not self.camera and not self.microphone:
            raise ValueError("no [[camera]] or [[microphone]] configured: nothing to inspect")
        return self

    @property
    def cameras(self) -> list[CameraSettings]:
        return [c for c in self.camera if c.enabled]

    @property
    def microphones(self) -> list[MicrophoneSettings]:
        return [m for m in self.microphone if m.enabled]


def default_state_dir() -> Path:
    """systemd's ``StateDirectory`` when run as a unit, else the XDG state directory."""
    if os.environ.get("STATE_DIRECTORY"):
        return Path(os.environ["STATE_DIRECTORY"].split(":")[0])
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "edge-inspector"


class ConfigError(UserError):
    """Carries one message per problem, each starting with its key path."""

    def __init__(self, problems: list[str], path: Path | None = None) -> None:
        self.problems = problems
        self.path = path
        super().__init__("\n".join(problems))


def _key_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("function-after[_scheme(), str]",) or is_tag(part):
            continue
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _format_errors(err: ValidationError) -> list[str]:
    problems = []
    for e in err.errors():
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = _unknown_key(e["loc"])
        if not e["loc"] and re.match(r"^[a-z]+(\[\d+\])?\.\w+: ", msg):
            problems.append(msg)  # a model-level check that already names its key
        elif e["loc"] and is_tag(e["loc"][-1]) and re.match(r"^\w+: ", msg):
            problems.append(f"{_key_path(e['loc'])}.{msg}")  # a source kind's check across its keys
        else:
            problems.append(f"{_key_path(e['loc'])}: {msg}")
    return problems


def _resolve(base: Path, path: Path) -> Path:
    """``~`` expanded; a relative path is relative to the config file's directory."""
    path = Path(os.path.expanduser(path))
    return path if path.is_absolute() else (base / path).resolve()


def _unknown_key(loc: tuple[Any, ...]) -> str:
    """A key of another source kind says which kinds it is for; any other is a misspelling."""
    if len(loc) >= 4 and loc[0] in ("camera", "microphone") and is_tag(loc[2]):
        kinds = keys_elsewhere(loc[0], str(loc[-1]))
        if kinds:
            scheme = str(loc[2]).strip("<>").split()[-1]
            return f"only for {' · '.join(kinds)} {loc[0]}s; this one is {scheme}"
    return "unknown key (check the spelling; see the README's config reference)"


def parse_config(data: dict[str, Any], source_path: Path | None = None) -> Config:
    """Validate a parsed TOML document; relative paths are resolved against the config file."""
    try:
        cfg = Config(**data, source_path=source_path)
    except ValidationError as err:
        raise ConfigError(_format_errors(err), source_path) from None
    base = source_path.parent if source_path else Path.cwd()
    runtime = cfg.runtime
    if not runtime.engines_dir.is_absolute():
        runtime.engines_dir = (base / runtime.engines_dir).resolve()
    pub = cfg.publisher
    pub.journal = _resolve(base, pub.journal)
    if cfg.health.token_file is not None:
        cfg.health.token_file = _resolve(base, cfg.health.token_file)
    if cfg.snapshots.dir is not None:
        cfg.snapshots.dir = _resolve(base, cfg.snapshots.dir)
    for key in ("curve_secret_key", "curve_allowed_clients"):  # key files, relative to the config file
        value = getattr(pub, key)
        if value and value != "*" and not (key == "curve_secret_key" and _looks_like_z85_key(value)):
            setattr(pub, key, str(_resolve(base, Path(value))))
    if cfg.mqtt is not None:
        for key in ("password_file", "ca_file", "cert_file", "key_file"):
            value = getattr(cfg.mqtt, key)
            if value is not None:
                setattr(cfg.mqtt, key, _resolve(base, value))
    return cfg


def _looks_like_z85_key(value: str) -> bool:
    """A key pasted into the config instead of a path: left as is, so the check can name it."""
    from zmq.utils import z85

    if len(value) != 40 or Path(value).exists():
        return False
    try:
        return len(z85.decode(value.encode("ascii"))) == 32
    except (ValueError, KeyError, UnicodeEncodeError):
        return False


def load_config(path: Path | None = None) -> Config:
    """Load ``path`` (or the embedded demo config) and validate its structure."""
    path = Path(path) if path else DEFAULT_CONFIG
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"config file not found: {path}"], path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: cannot read: {exc}"], path) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"], path) from None
    return parse_config(data, path.resolve())
