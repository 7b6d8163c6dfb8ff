"""``edge-inspector log --to FILE``: the client library's stream, written to a file.

Resumes from the last event the file (or its newest rotated predecessor) holds, so a killed or
restarted logger, or a restarted daemon, leaves every event in the file exactly once, in ``seq``
order.  When the daemon starts a new journal, the logger says so and starts a new file: a file
never mixes two numberings.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

from edge_inspector.client import CurveKeys, EventStream
from edge_inspector.errors import UserError
from edge_inspector.logger.writers import open_writer


def run_log(
    to: Path,
    endpoint: str,
    catchup_endpoint: str | None,
    topics: list[str],
    since: int | None = None,
    max_bytes: int = 100 * 2**20,
    keep: int = 10,
    count: int | None = None,
    curve_server_public: CurveKeys | str | None = None,
) -> int:
    """Log until Ctrl-C / SIGTERM (exit 0), or until ``count`` events were written."""
    if not catchup_endpoint:
        raise UserError("log: needs the daemon's catch-up endpoint (--catchup) to lose nothing")

    def note(msg: str) -> None:
        print(f"log: {msg}", file=sys.stderr, flush=True)

    writer = open_writer(to, max_bytes, keep)
    last = writer.last()
    if last is not None:
        if since is not None:
            note(f"{to} already holds events up to seq {last.seq}: resuming there, not at --since {since}")
        since, since_id = last.seq, last.id
        note(f"resuming after seq {last.seq}")
    else:
        since, since_id = (0 if since is None else since), None

    def on_reset(old: int | None, reason: str) -> None:
        kept = writer.rotate()
        note(f"the daemon started a new journal; its events go to a new {to.name}"
             + (f" (the previous events are in {kept.name})" if kept else ""))

    def stop(*_: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    written = 0
    try:
        with EventStream(endpoint, catchup_endpoint, topics, since=since, since_id=since_id,
                         curve_server_public=curve_server_public, on_note=note, on_reset=on_reset) as stream:
            for item in stream:
                writer.write(item)
                written += 1
                if count is not None and written >= count:
                    break
    except KeyboardInterrupt:
        pass
    finally:
        writer.close()
        signal.signal(signal.SIGTERM, previous)
    return 0
