"""The daemon: builds sources -> inspectors -> events from a config and owns their lifecycle.

Three modules make it: this one (construction order, the callbacks that publish, start, stop,
health), ``service_wiring.py`` (sources, queues and inspectors connected) and
``service_metrics.py`` (what it reports about itself).

Start order is events first (journal, then the publisher) so that nothing an inspector decides
can be lost, then inspectors, then sources.  Stop order is the reverse: sources stop capturing,
inspectors finish what is queued, the bus publishes everything journalled, sockets close.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable

from edge_inspector import service_metrics
from edge_inspector.config import Config
from edge_inspector.events.bus import EventBus
from edge_inspector.events.journal import Journal
from edge_inspector.events.schema import topic_for
from edge_inspector.health import (
    HealthServer,
    MetricSnapshot,
    StartTimeoutExtension,
    sd_notify,
    watchdog_interval_s,
)
from edge_inspector.values import Verdict
from edge_inspector.inspectors.engines import DaemonEngines
from edge_inspector.manifest import load_manifest
from edge_inspector.memory import TRIM_INTERVAL_S, release_free_memory
from edge_inspector.metrics import Metrics
from edge_inspector.service_wiring import SourceView, build_acoustic, build_visual
from edge_inspector.sinks import build_sinks, stop_sinks
from edge_inspector.stop_signals import on_stop_signals
from edge_inspector.supervision import ThreadHealth, describe
from edge_inspector.web.views import Views

log = logging.getLogger(__name__)


class Service:
    """One running daemon.  ``run()`` blocks until a signal or until every file source ended."""

    def __init__(
        self,
        cfg: Config,
        on_event: Callable[[str, dict[str, Any]], None] | None = None,
        on_verdict: Callable[[Verdict], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.on_event = on_event  # observers: replay progress, evaluation, benchmarks
        self.on_verdict = on_verdict
        self.stop_requested = threading.Event()
        self._reload_requested = threading.Event()
        self.started_mono = time.monotonic()
        self.sources: dict[str, SourceView] = {}
        self.visual = None
        self.policy: Any = None  # how the visual models run (inspectors/policy.py), once built
        self.acoustic = None
        self.health: HealthServer | None = None
        self.failure: str | None = None
        self.threads = ThreadHealth()  # failures and restarts of every long-lived thread
        self.views = Views(cfg, self.threads)  # snapshots, live preview, the status page's events
        self.telemetry = Metrics(self.metrics)  # the /metrics registry: histograms + the snapshot below
        self._lock = threading.Lock()
        self.manifest = load_manifest(cfg.runtime.engines_dir)
        self.engines = DaemonEngines(cfg.runtime, self.manifest)
        self.journal = Journal(
            cfg.publisher.journal,
            retention_events=cfg.publisher.retention_events,
            synchronous=cfg.publisher.journal_sync,
        )
        classifier = self.manifest.classifier("visual")
        sinks = []
        try:
            sinks = build_sinks(cfg, self.journal, tuple(getattr(classifier, "labels", ())), self.threads)
            self.bus = EventBus(
                cfg.publisher.endpoint,
                self.journal,
                catchup_endpoint=cfg.publisher.catchup_endpoint,
                sndhwm=cfg.publisher.sndhwm,
                linger_ms=cfg.publisher.linger_ms,
                heartbeat_s=cfg.publisher.heartbeat_s,
                counters=self.counters,
                curve_secret_key=cfg.publisher.curve_secret_key,
                curve_allowed_clients=cfg.publisher.curve_allowed_clients,
                sinks=sinks,
                health=self.threads,
            )
        except BaseException:
            stop_sinks(sinks)
            self.journal.close()
            raise
        try:
            with StartTimeoutExtension("loading models (a first start on a GPU builds TensorRT plans)"):
                self.visual = build_visual(self)
                self.acoustic = build_acoustic(self)
        except BaseException:
            self.bus.close(timeout_s=1.0)
            self.journal.close()
            raise

    # -- callbacks from worker threads -------------------------------------------------------
    def _on_status(self, source: str, state: str, detail: str) -> None:
        log.info("source %s %s%s", source, state, f": {detail}" if detail else "")
        event = self.bus.publish_status(source, state, detail)
        if self.on_event:
            self.on_event(topic_for("status", source), event)

    def _on_window(self, verdict: Verdict) -> None:
        """Acoustic per-window decision (ok or not): only on ``verdict.<mic>``."""
        self._publish(verdict, defect_topic=False)

    def _on_verdict(self, verdict: Verdict) -> None:
        """A visual frame verdict, or one acoustic fault episode."""
        self._publish(verdict, defect_topic=verdict.defect)

    def _publish(self, verdict: Verdict, defect_topic: bool) -> None:
        view = self.sources.get(verdict.source)
        published: list[tuple[str, dict[str, Any]]] = []
        event_id, fields = self.views.reserve(verdict, defect_topic)  # queued first: the event names them
        if defect_topic:
            published.append((topic_for("defect", verdict.source, verdict.kind),
                              self.bus.publish_verdict(verdict, "defect", event_id, fields)))
        if self.cfg.publisher.publish_verdicts and (verdict.kind == "visual" or not defect_topic):
            published.append((topic_for("verdict", verdict.source), self.bus.publish_verdict(verdict, "verdict", fields=fields)))
        self.views.published(verdict, published)
        if view is not None:
            final = not verdict.extra.get("ongoing") and not verdict.extra.get("window")
            latency_s = time.monotonic() - verdict.mono
            with self._lock:
                view.inspected += 1
                view.defects += int(verdict.defect and final)
                view.last_label, view.last_score = verdict.label, verdict.score
                view.latencies_ms.append(latency_s * 1000.0)
            if verdict.kind == "visual":  # microphones are observed per chunk (on_chunk)
                inference_ms = verdict.extra.get("timing_ms", {}).get("inference")
                self.telemetry.observe(verdict.source, "camera", latency_s,
                                       None if inference_ms is None else inference_ms / 1000.0)
        if self.on_verdict:
            self.on_verdict(verdict)
        if self.on_event:
            for topic, event in published:
                self.on_event(topic, event)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        from edge_inspector.checks import exposure_warnings

        for warning in exposure_warnings(self.cfg):
            log.warning("%s", warning)
        self.views.start(self.journal)
        if self.cfg.health.listen:
            from edge_inspector.web.site import start_http

            self.health = start_http(self)
        for inspector in (self.visual, self.acoustic):
            if inspector is not None:
                inspector.start()
        for view in self.sources.values():
            view.thread.start()
        sd_notify("READY=1\nSTATUS=inspecting")
        log.info("edge-inspector running: %d camera(s), %d microphone(s), publishing on %s",
                 len(self.cfg.cameras), len(self.cfg.microphones), self.cfg.publisher.endpoint)

    def request_stop(self, *_: object) -> None:
        self.stop_requested.set()

    def finished(self) -> bool:
        """Every source has ended and every inspector has drained its queues."""
        inspectors = [i for i in (self.visual, self.acoustic) if i is not None]
        return all(not i.is_alive() for i in inspectors)

    def wait(self, tick: Callable[[], None] | None = None, tick_s: float = 0.5) -> None:
        ping = watchdog_interval_s()
        last_ping, next_trim = 0.0, time.monotonic() + TRIM_INTERVAL_S
        while not self.stop_requested.wait(min(tick_s, ping or tick_s)):
            now = time.monotonic()
            if ping and now - last_ping >= ping and self.alive():  # a dead inspector stops the pings
                sd_notify("WATCHDOG=1")
                last_ping = now
            for view in self.sources.values():
                view.thread.check_stall(now)
            if self._reload_requested.is_set():
                self._reload_requested.clear()
                self.bus.security.reload()
            if now >= next_trim:  # bounded buffers that filled in a burst: give the memory back
                release_free_memory()
                next_trim = now + TRIM_INTERVAL_S
            if tick:
                tick()
            if self.finished() or self.broken():
                break

    def _inspectors(self) -> list[Any]:
        return [i for i in (self.visual, self.acoustic) if i is not None]

    def broken(self, check_bus: bool = True) -> str | None:
        """Why the daemon cannot go on (a thread that could not be restarted), else None.

        Running half-blind would be worse than stopping: the exit code 1 makes systemd restart it.
        """
        if self.journal.failure is not None:  # the cause, whichever thread met it first
            return self.journal.failure
        for inspector in self._inspectors():
            if inspector.error is not None:
                if self.threads.fatal is None:
                    self.threads.mark_fatal(inspector.name, describe(inspector.error))
                return f"{inspector.name}: {describe(inspector.error)}"
        if self.threads.fatal is not None:
            return self.threads.fatal
        if check_bus and not self.bus.security.alive:  # clients could no longer be let in
            self.threads.mark_fatal("zap-authenticator", "the CURVE authenticator thread stopped")
            return self.threads.fatal
        if check_bus and not self.bus.alive:
            failed = self.bus.failed_sinks()
            reason = "event sink failed: " + "; ".join(failed) if failed else "event publisher stopped"
            self.threads.mark_fatal("event-bus", reason)
            return reason
        return None

    def stop(self, timeout_s: float = 5.0) -> int:
        """Stop sources, drain inspectors, publish everything queued; returns the exit code.

        Sources, inspectors and the bus each get their own time budget (together within
        systemd's ``TimeoutStopSec``), so a camera stuck in a network read cannot eat the time
        the inspectors need to finish what is queued.
        """
        sd_notify("STOPPING=1")
        self.failure = self.broken()
        for view in self.sources.values():
            view.thread.stop()
        deadline = time.monotonic() + timeout_s
        for view in self.sources.values():
            if view.thread.ident is not None:  # never started when start-up failed
                view.thread.join(max(0.1, deadline - time.monotonic()))
            view.queue.close()  # a source stuck in a read must not hold up the drain
        deadline = time.monotonic() + timeout_s
        for inspector in self._inspectors():
            inspector.stop()
            if inspector.ident is not None:
                inspector.join(max(0.1, deadline - time.monotonic()))
        self.views.close()
        self.bus.close(timeout_s=3.0)
        self.journal.close()
        if self.health:
            self.health.close()
        self.engines.close()
        self.failure = self.failure or self.broken(check_bus=False)  # the bus is closed by now
        fatal = [v.thread.fatal_error for v in self.sources.values() if v.thread.fatal_error]
        if fatal and not self.failure:
            self.failure = "; ".join(fatal)
        return 1 if self.failure else 0

    def reload(self, *_: object) -> None:
        """SIGHUP: re-read the CURVE allow-list (the only thing that changes without a restart)."""
        self._reload_requested.set()

    def run(self, tick: Callable[[], None] | None = None) -> int:
        main = threading.current_thread() is threading.main_thread()  # handlers belong to it
        hup = signal.signal(signal.SIGHUP, self.reload) if main else None
        with on_stop_signals(self.request_stop):
            try:
                self.start()
                self.wait(tick)
            finally:
                code = self.stop()
                if hup is not None:
                    signal.signal(signal.SIGHUP, hup)
        return code

    # -- observability ------------------------------------------------------------------------
    def alive(self) -> bool:
        """For /healthz and the systemd watchdog: every worker thread is still running."""
        return self.stop_requested.is_set() or (
            all(i.is_alive() for i in self._inspectors()) and self.broken() is None
        )

    def ready(self) -> bool:
        """For /readyz: every source delivers and no thread has failed for good."""
        if self.broken() is not None:
            return False
        return all(v.thread.counters.state == "online" for v in self.sources.values())

    def source_rows(self) -> list[dict[str, Any]]:
        """One row per source for the status table, the page and the heartbeat (``service_metrics``)."""
        return service_metrics.source_rows(self)

    def model_info(self) -> list[dict[str, str]]:
        return self.engines.model_info()

    def counters(self) -> dict[str, Any]:
        """Compact counters carried by every heartbeat event."""
        return service_metrics.heartbeat_counters(self)

    def metrics(self) -> MetricSnapshot:
        """Everything /metrics shows besides the histograms and the process collectors."""
        return service_metrics.metric_snapshot(self)
