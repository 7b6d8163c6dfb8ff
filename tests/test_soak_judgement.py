"""The soak's verdict on FD and thread counts: a camera's reconnect is a transient, a leak is not.

The soak (``tools/soak.py``) compares counts only at steady moments (every source online, the
camera not taken away within the last ``RECONNECT_WINDOW_S``).  These samples are modelled on a
35-minute run (a sample every 10 s, the camera taken away every 5 minutes): a socket held for a
moment while the camera reconnects must pass, an FD kept per reconnect must fail, and so must a
run where the camera never came back (nothing steady to judge).
"""

from __future__ import annotations

import sys

from conftest import ROOT

sys.path.insert(0, str(ROOT / "tools"))

import soak  # noqa: E402

RESTART_EVERY_S = 300.0


def run(leak_per_reconnect: int = 0, transient: int = 1, online_after_s: float = 12.0,
        camera_never_back: bool = False) -> dict:
    """Samples of a modelled run after the first 5 minutes, judged as the soak judges them."""
    samples = []
    for i in range(0, 35 * 6 + 1):
        t = i * 10.0
        restarts = int(t // RESTART_EVERY_S)
        since = t - restarts * RESTART_EVERY_S if restarts else 1e9
        reconnecting = camera_never_back and restarts > 0 or since < online_after_s
        fds = 34 + leak_per_reconnect * restarts + (transient if reconnecting else 0)
        online = not reconnecting
        samples.append({"t": t, "fds": fds, "threads": 24,
                        "steady": online and since > soak.RECONNECT_WINDOW_S})
    late = [s for s in samples if s["t"] >= soak.WARMUP_S]
    result = soak.counts_judged(late)
    result["flat"] = soak.counts_flat(result)
    return result


def test_a_socket_held_while_the_camera_reconnects_is_not_a_trend() -> None:
    result = run(transient=1)
    assert result["flat"], result
    assert result["fds_after_5_min"] == [34, 34]
    assert result["fds_in_reconnect_windows"] == [34, 35]  # shown, not judged


def test_an_fd_leaked_per_reconnect_fails_the_soak() -> None:
    result = run(leak_per_reconnect=1)
    assert not result["flat"], result
    assert result["fds_growth"] >= 2


def test_a_camera_that_never_comes_back_leaves_nothing_to_judge() -> None:
    result = run(camera_never_back=True)
    assert result["steady_share"] < soak.MIN_STEADY
    assert not result["flat"], result
