"""CURVE that authenticates: only clients whose public key is in the allow-list get anything.

A real daemon with ``curve_secret_key`` and ``curve_allowed_clients``; real ZeroMQ clients with
no CURVE, the wrong server key, a self-made key pair, and an allowed key; SIGHUP after a key is
added to the directory.  Secret keys must appear in no log line, event, metric or manifest.
"""

from __future__ import annotations

import json
import shutil
import signal
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import zmq
import zmq.auth

from edge_inspector.cli import main
from edge_inspector.client import CurveKeys, curve_keys, fetch_page

from conftest import ENGINES, ROOT, DaemonConfig, journal_events, start_daemon

pytestmark = pytest.mark.skipif(not (ENGINES / "manifest.toml").exists(), reason="engines not built")


def keys_new(name: str, directory: Path) -> tuple[Path, Path]:
    assert main(["keys", "new", name, "--dir", str(directory)]) == 0
    return directory / f"{name}.key", directory / f"{name}.key_secret"


def secret_of(path: Path) -> str:
    return zmq.auth.load_certificate(str(path))[1].decode()  # type: ignore[union-attr]


def count_events(endpoint: str, keys: CurveKeys | None, seconds: float, ctx: zmq.Context) -> int:
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    if keys is not None:
        sub.curve_serverkey, sub.curve_publickey, sub.curve_secretkey = keys.server_public, keys.public, keys.secret
    sub.subscribe(b"")
    sub.connect(endpoint)
    n, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        if sub.poll(100):
            sub.recv_multipart()
            n += 1
    sub.close(0)
    return n


def test_keys_new_writes_a_certificate_pair(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    public, secret = keys_new("line3", tmp_path / "keys")
    out = capsys.readouterr().out
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600 and stat.S_IMODE(public.stat().st_mode) == 0o644
    pub_key, sec_key = zmq.auth.load_certificate(str(secret))
    assert zmq.auth.load_certificate(str(public)) == (pub_key, None) and sec_key is not None
    assert pub_key.decode() in out and sec_key.decode() not in out
    assert main(["keys", "new", "line3", "--dir", str(tmp_path / "keys")]) == 2  # never overwrites


@pytest.mark.parametrize("case", ["readable", "inline", "public only", "malformed", "secret in allow-list",
                                  "no allow-list"])
def test_bad_curve_config_is_named_without_the_secret(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      case: str) -> None:
    _pub, secret = keys_new("server", tmp_path / "server")
    allowed = tmp_path / "clients"
    allowed.mkdir()
    client_pub, client_secret = keys_new("client", tmp_path / "client")
    shutil.copy(client_pub, allowed)
    key, allow, expected = str(secret), str(allowed), ""
    if case == "readable":
        secret.chmod(0o644)
        expected = "publisher.curve_secret_key: " + str(secret) + " can be read by other users (mode 0644); chmod 600"
    elif case == "inline":
        key, expected = secret_of(secret), "publisher.curve_secret_key: give the path of a secret key file"
    elif case == "public only":
        key, expected = str(tmp_path / "server" / "server.key"), "holds no secret key"
    elif case == "malformed":
        text = secret.read_text()
        secret.write_text(text.replace(secret_of(secret), "not-a-key"))
        expected = "publisher.curve_secret_key: the secret key in " + str(secret) + " is not a 40-character Z85 key"
    elif case == "secret in allow-list":
        shutil.copy(client_secret, allowed / "oops.key")
        expected = "publisher.curve_allowed_clients: " + str(allowed / "oops.key") + " holds a secret key"
    else:
        allow, expected = "", "publisher.curve_allowed_clients: needed with curve_secret_key"
    cfg = DaemonConfig(tmp_path, cameras=[{"name": "cam", "uri": "synthetic://surface"}],
                       publisher={"curve_secret_key": key, **({"curve_allowed_clients": allow} if allow else {})})
    code = main(["check-config", str(cfg.path)])
    err = capsys.readouterr().err
    assert code == 2 and expected in err, err
    for secret_file in (secret, client_secret):
        assert secret_of(secret_file) not in err


@pytest.mark.slow
def test_only_allowed_clients_get_events_and_sighup_lets_a_new_one_in(tmp_path: Path) -> None:
    server_pub, server_secret = keys_new("server", tmp_path / "server")
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    a_pub, a_secret = keys_new("a", tmp_path / "a")
    b_pub, b_secret = keys_new("b", tmp_path / "b")
    shutil.copy(a_pub, allowed)
    cfg = DaemonConfig(tmp_path, cameras=[{"name": "cam", "uri": "synthetic://surface?fps=10"}],
                       publisher={"publish_verdicts": True, "heartbeat_s": 0.5,
                                  "curve_secret_key": str(server_secret), "curve_allowed_clients": str(allowed)})
    proc = start_daemon(cfg.path)
    ctx = zmq.Context()
    wrong_server = zmq.curve_keypair()[0].decode()
    a = curve_keys(str(server_pub), str(a_secret))
    b = curve_keys(str(server_pub), str(b_secret))
    try:
        assert a is not None and b is not None
        deadline = time.monotonic() + 60
        while count_events(cfg.endpoint, a, 0.5, ctx) == 0:  # the daemon is up once A hears it
            assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read() if proc.poll() else ""
        counts = {
            "plain": count_events(cfg.endpoint, None, 2.0, ctx),
            "wrong server key": count_events(cfg.endpoint, curve_keys(wrong_server, str(a_secret)), 2.0, ctx),
            "self-made key": count_events(cfg.endpoint, curve_keys(str(server_pub)), 2.0, ctx),
            "b, not yet allowed": count_events(cfg.endpoint, b, 2.0, ctx),
            "a, allowed": count_events(cfg.endpoint, a, 2.0, ctx),
        }
        pairs, newest = fetch_page(ctx, cfg.catchup, 0, curve_server_public=a)
        with pytest.raises(TimeoutError):
            fetch_page(ctx, cfg.catchup, 0, timeout_s=1.0, curve_server_public=b)
        shutil.copy(b_pub, allowed)
        proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        counts["b after SIGHUP"] = count_events(cfg.endpoint, b, 2.0, ctx)
        tail = subprocess.run([sys.executable, "-m", "edge_inspector.cli", "tail", "--endpoint", cfg.endpoint,
                               "--json", "--count", "3", "--curve-server-key", str(server_pub),
                               "--curve-client-key", str(b_secret)],
                              capture_output=True, text=True, cwd=ROOT, timeout=30)
        metrics = urllib.request.urlopen(f"http://{cfg.health}/metrics", timeout=5).read().decode()
    finally:
        ctx.term()
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert counts["plain"] == counts["wrong server key"] == counts["self-made key"] == 0, counts
    assert counts["b, not yet allowed"] == 0 and counts["a, allowed"] >= 10 and counts["b after SIGHUP"] >= 10, counts
    assert len(pairs) >= 10 and newest >= json.loads(pairs[-1][1])["seq"]
    assert tail.returncode == 0 and len(tail.stdout.splitlines()) == 3, tail.stderr
    assert "1 client key(s) allowed" in err and "2 client key(s) allowed" in err
    # no secret key anywhere a person or a scraper could see it
    record = subprocess.run([sys.executable, "-m", "edge_inspector.cli", "record", "--out", str(tmp_path / "rec"),
                             "--config", str(cfg.path), "--duration", "1"], capture_output=True, text=True,
                            cwd=ROOT, timeout=60)
    seen = err + tail.stdout + tail.stderr + metrics + json.dumps(journal_events(cfg.journal)) + record.stderr
    seen += (tmp_path / "rec" / "manifest.json").read_text()
    for secret_file in (server_secret, a_secret, b_secret):
        assert secret_of(secret_file) not in seen, secret_file.name
