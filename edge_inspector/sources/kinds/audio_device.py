"""Sound cards and USB microphones through PortAudio: ``pulse`` and ``pyaudio:<index|name>``.

``pulse`` is PulseAudio's (or PipeWire's) default source; ``pyaudio:`` names a PortAudio input
device by its index or (part of) its name; a wrong one is answered with the list of devices present.  The
capture thread is :class:`~edge_inspector.sources.microphone.PyAudioMicrophone`.
"""

from __future__ import annotations

from pydantic import field_validator

from edge_inspector.sources.audio_devices import check_device_uri
from edge_inspector.sources.microphone import open_device_microphone
from edge_inspector.sources.registry import SourceKind
from edge_inspector.sources.settings import MicrophoneSettings


class AudioDeviceSettings(MicrophoneSettings):
    """A ``pulse`` or ``pyaudio:`` microphone."""

    @field_validator("uri")
    @classmethod
    def _plain_pulse(cls, uri: str) -> str:
        if uri.startswith("pulse:"):
            raise ValueError("use plain 'pulse' (the PulseAudio default source) or pyaudio:<index|name>")
        return uri


def check(s: AudioDeviceSettings, devices: bool) -> list[str]:
    problem = check_device_uri(s.uri) if devices else None
    return [f"uri: {problem}"] if problem else []


KINDS = (SourceKind("microphone", ("pulse", "pyaudio"), AudioDeviceSettings, open_device_microphone,
                    "pulse, pyaudio:<index|name>", check=check),)
