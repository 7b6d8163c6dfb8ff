"""Plant integrations as event sinks: MQTT (and Sparkplug B), the PLC bridge.

:func:`build_sinks` turns the config's optional sections into sinks for the dispatcher; their
libraries (paho-mqtt, protobuf, pymodbus, asyncua) are imported only when a section asks for
them, so a daemon without ``[mqtt]`` or ``[plc]`` never loads them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edge_inspector.config import Config
    from edge_inspector.events.journal import Journal
    from edge_inspector.events.sink import Sink


def build_sinks(cfg: Config, journal: Journal) -> list[Sink]:
    """The sinks the config enables, in the order they receive each event."""
    sinks: list[Sink] = []
    if cfg.mqtt is not None and cfg.mqtt.enabled:
        from edge_inspector.sinks.mqtt import MqttSink

        sinks.append(MqttSink(cfg.mqtt, journal))
        if cfg.mqtt.sparkplug:
            from edge_inspector.sinks.sparkplug import SparkplugSink

            sources = [c.name for c in cfg.cameras] + [m.name for m in cfg.microphones]
            sinks.append(SparkplugSink(cfg.mqtt, journal, sources))
    return sinks


def check_sinks(cfg: Config) -> list[str]:
    """``check-config`` problems of the sink sections, each naming its key."""
    problems: list[str] = []
    if cfg.mqtt is not None and cfg.mqtt.enabled:
        from edge_inspector.sinks.mqtt_config import check_mqtt

        problems += check_mqtt(cfg.mqtt)
    return problems
