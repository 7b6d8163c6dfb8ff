"""The demo's fixed ports (5556, 5557, 9108: what `edge-inspector run` serves without a config),
for one user at a time on this machine.

The test of the demo config and the fresh-machine check (the README's demo, the installed
service) all need these ports, and several checkouts' suites and a fresh root (which shares this
machine's network) may run at once. Each user holds an abstract Unix socket as a lock (one name
per network namespace, so a chroot sees the same lock) and waits until the ports are free, then
starts its daemon; the lock goes with the process that holds it, however it ends.

    python3 tools/demo_ports.py --hold [--timeout S]   # prints "held" once it holds the ports,
                                                        # then keeps them until it is stopped
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import socket
import sys
import time
from typing import Iterator

PORTS = (5556, 5557, 9108)
LOCK_NAME = "\0edge-inspector-demo-ports"


class PortsBusy(Exception):
    """The ports stayed taken for the whole timeout; the message says by what."""


def bindable(port: int) -> bool:
    """Whether a listener could bind ``port`` on 127.0.0.1 now (with SO_REUSEADDR, as ZeroMQ and
    the daemon's HTTP server bind, so a closed connection in TIME_WAIT does not count)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


@contextlib.contextmanager
def hold(timeout_s: float = 600.0) -> Iterator[None]:
    """Wait for the lock, then for the ports to be free; hold the lock inside the block."""
    deadline = time.monotonic() + timeout_s
    with socket.socket(socket.AF_UNIX) as lock:
        while True:
            try:
                lock.bind(LOCK_NAME)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise PortsBusy(f"another test or check held the demo's ports for {timeout_s:.0f} s") from None
                time.sleep(0.5)
        while busy := [port for port in PORTS if not bindable(port)]:
            if time.monotonic() > deadline:
                raise PortsBusy(f"ports {busy} still in use after {timeout_s:.0f} s (a demo daemon running?)")
            time.sleep(0.5)
        yield


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hold", action="store_true", required=True, help="hold the ports until stopped")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for them (default 600)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        with hold(args.timeout):
            print("held", flush=True)
            while True:
                time.sleep(3600)
    except PortsBusy as exc:
        print(f"demo_ports: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
