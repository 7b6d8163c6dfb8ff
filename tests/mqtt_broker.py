"""A real mosquitto broker for tests: own port, own persistence directory, stop and restart."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import bench_plant  # noqa: E402  (the benchmarks' broker, shared)
from bench_plant import mosquitto_path  # noqa: E402


def need_mosquitto() -> str:
    exe = mosquitto_path()
    if exe is None:
        pytest.skip("mosquitto is not installed (./setup.sh --dev installs it)")
    return exe


class Broker(bench_plant.Broker):
    """The benchmarks' broker, in the test's tmp_path (skips where mosquitto is missing)."""

    def __init__(self, tmp_path: Path) -> None:
        need_mosquitto()
        workdir = tmp_path / "mosquitto"
        workdir.mkdir(exist_ok=True)
        super().__init__(workdir)


class Collector:
    """A paho subscriber with a persistent session (QoS 1), like Ignition's or a logger's."""

    def __init__(self, broker: Broker, topic: str, client_id: str = "test-collector") -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", broker.port, keepalive=5)
        self.client.loop_start()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def snapshot(self) -> list[tuple[str, bytes, bool]]:
        with self._lock:
            return list(self.messages)

    def wait_for(self, predicate: Any, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.snapshot()):
                return True
            time.sleep(0.05)
        return predicate(self.snapshot())

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture()
def broker(tmp_path: Path):
    b = Broker(tmp_path).start()
    yield b
    b.stop()
