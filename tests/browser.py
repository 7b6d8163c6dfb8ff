"""Headless Chromium driven over the DevTools protocol, on a pipe (no extra Python package).

``chromium --remote-debugging-pipe`` reads protocol commands from its fd 3 and writes answers
and events to its fd 4, each a JSON object followed by a NUL byte.  This is what Puppeteer's
``pipe: true`` does; enough here to open a page, wait for what it shows, read the DOM, collect
script errors and take a screenshot.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


class BrowserError(RuntimeError):
    pass


class Browser:
    def __init__(self, profile: Path, width: int = 1280, height: int = 1100) -> None:
        if CHROMIUM is None:
            raise BrowserError("chromium is not installed (setup.sh --dev installs it)")
        self.width, self.height = width, height
        cmd_read, cmd_write = os.pipe()  # we write commands -> its fd 3
        out_read, out_write = os.pipe()  # its fd 4 -> we read answers
        self.log = open(profile.with_suffix(".log"), "w")

        def wire() -> None:  # in the child, before exec: the pipe ends become its fds 3 and 4
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (cmd_read, out_write)]
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)

        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic",
             "--no-default-browser-check", "--mute-audio", f"--user-data-dir={profile}", "about:blank"],
            close_fds=False, preexec_fn=wire,  # only inheritable fds (3, 4) survive the exec
            stdout=self.log, stderr=self.log,
            env={**os.environ, "HOME": str(profile.parent)})
        os.close(cmd_read)
        os.close(out_write)
        self._out = os.fdopen(cmd_write, "wb", buffering=0)
        self._in = os.fdopen(out_read, "rb", buffering=0)
        self._next = 0
        self._answers: dict[int, dict[str, Any]] = {}
        self._cond = threading.Condition()
        self.events: list[dict[str, Any]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.session: str | None = None

    def _read(self) -> None:
        buf = b""
        while True:
            data = self._in.read(65536)
            if not data:
                break
            buf += data
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                with self._cond:
                    if "id" in msg:
                        self._answers[msg["id"]] = msg
                    else:
                        self.events.append(msg)
                    self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def send(self, method: str, params: dict[str, Any] | None = None, timeout: float = 30.0,
             session: bool = True) -> dict[str, Any]:
        with self._cond:
            self._next += 1
            ident = self._next
        msg: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        self._out.write(json.dumps(msg).encode() + b"\0")
        with self._cond:
            if not self._cond.wait_for(lambda: ident in self._answers or not self._reader.is_alive(), timeout):
                raise BrowserError(f"{method}: no answer within {timeout} s")
            answer = self._answers.pop(ident, None)
        if answer is None:
            raise BrowserError(f"{method}: the browser exited")
        if "error" in answer:
            raise BrowserError(f"{method}: {answer['error']}")
        return answer.get("result", {})

    def open(self, url: str) -> None:
        """A new tab at ``url``; later calls talk to it."""
        target = self.send("Target.createTarget", {"url": "about:blank"}, session=False)["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True}, session=False)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable")
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": self.width, "height": self.height, "deviceScaleFactor": 1, "mobile": False})
        self.send("Page.navigate", {"url": url})

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float) -> Any:
        """Evaluate ``expression`` until it is truthy; its value, or an error after ``timeout``."""
        import time

        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise BrowserError(f"not true within {timeout} s: {expression}")
            time.sleep(0.1)

    def errors(self) -> list[str]:
        """Uncaught script exceptions and console errors the page produced."""
        out = []
        for ev in list(self.events):
            params = ev.get("params", {})
            if ev.get("method") == "Runtime.exceptionThrown":
                out.append(json.dumps(params.get("exceptionDetails", {}))[:500])
            elif ev.get("method") == "Runtime.consoleAPICalled" and params.get("type") == "error":
                out.append(json.dumps(params.get("args", []))[:500])
            elif ev.get("method") == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                out.append(params["entry"].get("text", "")[:500])
        return out

    def screenshot(self, path: Path, full_page: bool = True) -> Path:
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            size = self.send("Page.getLayoutMetrics")["cssContentSize"]
            params.update(captureBeyondViewport=True, clip={"x": 0, "y": 0, "width": self.width,
                                                             "height": max(self.height, int(size["height"])), "scale": 1})
        path.write_bytes(base64.b64decode(self.send("Page.captureScreenshot", params)["data"]))
        return path

    def close(self) -> None:
        try:
            self.send("Browser.close", session=False, timeout=5)
        except (BrowserError, OSError):
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for stream in (self._out, self._in):
            try:
                stream.close()
            except OSError:
                pass
        self.log.close()
