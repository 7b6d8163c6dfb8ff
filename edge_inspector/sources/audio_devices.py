"""Microphone URI parsing and PortAudio device discovery (``pulse``, ``pyaudio:<index|name>``).

PyAudio is an optional dependency (extra ``audio``): it is imported only here, when a real
device is used, so file and synthetic microphones work without it.  PortAudio's
initialise/terminate and device enumeration are not thread-safe, hence one module lock.
"""

from __future__ import annotations

import os
import threading
from types import ModuleType
from typing import Any

from edge_inspector.errors import UserError
from edge_inspector.native_log import quiet_stderr

PA_LOCK = threading.Lock()


def pyaudio_module() -> ModuleType:
    """Import PyAudio or say how to install it."""
    try:
        import pyaudio
    except ImportError as exc:
        raise UserError(
            "PyAudio is not installed: pip install 'edge-inspector[audio]' "
            "(needs the portaudio19-dev package)"
        ) from exc
    return pyaudio


def new_pyaudio() -> Any:
    """A fresh PortAudio session.

    A new session is needed after a sound server restart: PortAudio caches the device list
    and an old session cannot reopen the device.  JACK's autostart is disabled so probing a
    machine without JACK neither spawns a server nor waits for one.
    """
    pyaudio = pyaudio_module()
    os.environ.setdefault("JACK_NO_START_SERVER", "1")
    with PA_LOCK, quiet_stderr("portaudio"):  # its probe of ALSA/JACK/OSS prints dozens of lines
        return pyaudio.PyAudio()


def terminate_pyaudio(pa: Any) -> None:
    with PA_LOCK, quiet_stderr("portaudio"):
        pa.terminate()


def input_devices(pa: Any) -> list[dict[str, Any]]:
    """Input-capable devices of a PortAudio session, as plain dicts."""
    devices = []
    with PA_LOCK, quiet_stderr("portaudio"):
        count = pa.get_device_count()
        infos = [pa.get_device_info_by_index(i) for i in range(count)]
    for info in infos:
        if int(info.get("maxInputChannels", 0)) > 0:
            devices.append(
                {
                    "index": int(info["index"]),
                    "name": str(info["name"]),
                    "channels": int(info["maxInputChannels"]),
                    "default_rate": int(round(float(info["defaultSampleRate"]))),
                    "host_api": int(info.get("hostApi", 0)),
                }
            )
    return devices


def list_input_devices() -> list[dict[str, Any]]:
    """Input devices PortAudio can see now: ``index, name, channels, default_rate, host_api``."""
    pa = new_pyaudio()
    try:
        return input_devices(pa)
    finally:
        terminate_pyaudio(pa)


def describe_devices(devices: list[dict[str, Any]]) -> str:
    """``0: pulse (32 ch, 44100 Hz), 1: …`` for error messages."""
    if not devices:
        return "no input devices found (is a sound server running and a microphone connected?)"
    items = [f"{d['index']}: {d['name']} ({d['channels']} ch, {d['default_rate']} Hz)" for d in devices]
    return "available input devices: " + ", ".join(items)


def device_spec(uri: str) -> str:
    """The device part of a device URI: ``pulse`` -> ``pulse``, ``pyaudio:2`` -> ``2``."""
    if uri == "pulse":
        return "pulse"
    if uri.startswith("pyaudio:"):
        spec = uri[len("pyaudio:") :].strip()
        if spec:
            return spec
        raise UserError(f"microphone URI {uri!r}: give a device index or name, e.g. pyaudio:0")
    raise UserError(
        f"microphone URI {uri!r} is not a device; use pulse or pyaudio:<index|name>"
    )


def find_device(spec: str, devices: list[dict[str, Any]]) -> dict[str, Any]:
    """Resolve an index, an exact name, or a unique case-insensitive name substring.

    Raises ``LookupError`` with a message that lists the available input devices.
    """
    if spec.isdigit():
        for d in devices:
            if d["index"] == int(spec):
                return d
        raise LookupError(f"no input device with index {spec}; {describe_devices(devices)}")
    exact = [d for d in devices if d["name"] == spec]
    if exact:
        return exact[0]
    partial = [d for d in devices if spec.lower() in d["name"].lower()]
    if len(partial) == 1:
        return partial[0]
    if len(partial) > 1:
        names = ", ".join(f"{d['index']}: {d['name']}" for d in partial)
        raise LookupError(f"input device name {spec!r} is ambiguous ({names}); use an index")
    raise LookupError(f"input device {spec!r} not found; {describe_devices(devices)}")


def check_device_uri(uri: str) -> str | None:
    """None if ``uri`` names an input device that exists now, else a one-line message."""
    try:
        spec = device_spec(uri)
        devices = list_input_devices()
        find_device(spec, devices)
    except (UserError, LookupError) as exc:
        return str(exc)
    except OSError as exc:  # PortAudio could not initialise
        return f"cannot query audio devices: {exc}"
    return None
