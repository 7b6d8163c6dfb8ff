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
    from edge_inspector.supervision import ThreadHealth


def build_sinks(cfg: Config, journal: Journal, visual_labels: tuple[str, ...] = (),
                health: ThreadHealth | None = None) -> list[Sink]:
    """The sinks the config enables, in the order they receive each event.

    ``visual_labels`` (the visual classifier's labels) number the PLC bridge's defect codes.
    ``health`` counts the failures and restarts of the sinks' threads.  The PLC bridge binds its
    ports (and starts its thread) here; if it cannot, the sinks built before it are stopped.
    """
    sinks: list[Sink] = []
    if cfg.mqtt is not None and cfg.mqtt.enabled:
        from edge_inspector.sinks.mqtt import MqttSink

        sinks.append(MqttSink(cfg.mqtt, journal))
        if cfg.mqtt.sparkplug:
            from edge_inspector.sinks.sparkplug import SparkplugSink

            sources = [c.name for c in cfg.cameras] + [m.name for m in cfg.microphones]
            sinks.append(SparkplugSink(cfg.mqtt, journal, sources))
    if cfg.plc is not None and cfg.plc.enabled:
        from edge_inspector.sinks.plc import PlcBridge, defect_codes

        sinks.append(PlcBridge(cfg.plc, [c.name for c in cfg.cameras], defect_codes(visual_labels), health))
    return sinks


def stop_sinks(sinks: list[Sink], timeout_s: float = 2.0) -> None:
    """Release sinks that never reached a dispatcher (start-up failed after building them)."""
    for sink in sinks:
        sink.stop()
    for sink in sinks:
        sink.join(timeout_s)


def check_sinks(cfg: Config, bind: bool = True) -> list[str]:
    """``check-config`` problems of the sink sections, each naming its key."""
    problems: list[str] = []
    if cfg.plc is not None and cfg.plc.enabled:
        from edge_inspector.sinks.plc_config import check_plc

        problems += check_plc(cfg.plc, [c.name for c in cfg.cameras], cfg.publisher.publish_verdicts, bind)
    if cfg.mqtt is not None and cfg.mqtt.enabled:
        from edge_inspector.sinks.mqtt_config import check_mqtt

        problems += check_mqtt(cfg.mqtt)
    return problems
