"""CURVE key files: made, loaded and checked without a secret ever leaving its file.

Keys are ZeroMQ certificates in pyzmq's format (``zmq.auth.create_certificates``): ``NAME.key``
holds the public key, ``NAME.key_secret`` the public and the secret key, so any ZeroMQ binding
(czmq, JeroMQ, NetMQ, cppzmq) can load them.  The daemon takes a *path* to its secret file and
a directory of client ``*.key`` files it lets in; clients take the daemon's public key and their
own secret file.

A secret file readable by group or others is refused (``chmod 600``), and no message, log line,
manifest or metric ever contains a secret key: errors name the file and what is wrong with it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import zmq
from zmq.utils import z85

from edge_inspector.errors import UserError

#: ``curve_allowed_clients = "*"``: any client with a key pair (encryption without authentication)
ALLOW_ANY = "*"
_Z85_KEY_LEN = 40


def _z85_key(value: bytes) -> bool:
    if len(value) != _Z85_KEY_LEN:
        return False
    try:
        return len(z85.decode(value)) == 32
    except (ValueError, KeyError, TypeError):
        return False


def _read_cert(path: Path, what: str) -> tuple[bytes | None, bytes | None]:
    """(public, secret) as written in a certificate file; each None when absent."""
    public = secret = None
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{what}: key file {path} not found") from None
    except IsADirectoryError:
        raise UserError(f"{what}: {path} is a directory, expected a key file") from None
    except OSError as err:
        raise UserError(f"{what}: cannot read key file {path} ({err.strerror})") from None
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith(b"public-key"):
            public = line.split(b"=", 1)[1].strip(b" \t'\"")
        elif line.startswith(b"secret-key"):
            secret = line.split(b"=", 1)[1].strip(b" \t'\"")
    return public, secret


def load_secret_key(value: str | os.PathLike[str], what: str) -> tuple[bytes, bytes]:
    """(public, secret) Z85 keys from a ``NAME.key_secret`` file that only its owner can read."""
    text = str(value)
    if len(text) == _Z85_KEY_LEN and not Path(text).exists() and _z85_key(text.encode("ascii", "replace")):
        raise UserError(f"{what}: give the path of a secret key file (edge-inspector keys new NAME --dir DIR), "
                        "not the key itself: a key written into a config travels with every copy of it")
    path = Path(os.path.expanduser(text))
    public, secret = _read_cert(path, what)
    try:
        mode = path.stat().st_mode
    except OSError as err:
        raise UserError(f"{what}: cannot read key file {path} ({err.strerror})") from None
    if secret is None:
        raise UserError(f"{what}: {path} holds no secret key (is it the public NAME.key? use NAME.key_secret)")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise UserError(f"{what}: {path} can be read by other users (mode {stat.S_IMODE(mode):04o}); "
                        f"chmod 600 {path}")
    if not _z85_key(secret):
        raise UserError(f"{what}: the secret key in {path} is not a 40-character Z85 key")
    if public is None or not _z85_key(public) or zmq.curve_public(secret) != public:
        raise UserError(f"{what}: the public key in {path} is missing or does not belong to its secret key")
    return public, secret


def load_public_key(value: str, what: str) -> bytes:
    """A Z85 public key given as itself or as the path of a ``NAME.key`` (or key_secret) file."""
    if len(value) == _Z85_KEY_LEN and not Path(value).exists():
        if not _z85_key(value.encode("ascii", "replace")):
            raise UserError(f"{what}: not a 40-character Z85 public key, nor an existing key file")
        return value.encode("ascii")
    path = Path(os.path.expanduser(value))
    public, _secret = _read_cert(path, what)
    if public is None or not _z85_key(public):
        raise UserError(f"{what}: {path} holds no valid public key")
    return public


def allowed_client_keys(directory: str | os.PathLike[str], what: str) -> dict[str, bytes]:
    """``{file name: public key}`` of every ``*.key`` file in ``directory``; a bad file is named."""
    path = Path(os.path.expanduser(str(directory)))
    if not path.is_dir():
        raise UserError(f"{what}: {path} is not a directory (a directory of client NAME.key files, or \"*\")")
    keys = {}
    for file in sorted(path.glob("*.key")):
        public, secret = _read_cert(file, what)
        if public is None or not _z85_key(public):
            raise UserError(f"{what}: {file} holds no valid public key")
        if secret is not None:
            raise UserError(f"{what}: {file} holds a secret key: only public NAME.key files belong here "
                            "(move it away and keep the secret with its client)")
        keys[file.name] = public
    return keys


def create_key_pair(directory: Path, name: str) -> tuple[Path, Path]:
    """Write ``directory/NAME.key`` and ``directory/NAME.key_secret`` (0600); never overwrite."""
    import zmq.auth

    if not name or any(c in name for c in "/\\\0") or name.startswith("."):
        raise UserError(f"keys new: {name!r} is not a usable key name (letters, digits, - and _)")
    public, secret = directory / f"{name}.key", directory / f"{name}.key_secret"
    for existing in (public, secret):
        if existing.exists():
            raise UserError(f"keys new: {existing} already exists; choose another name or remove it first")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"keys new: cannot create {directory} ({err.strerror})") from None
    old_umask = os.umask(0o077)  # the secret file is never readable by others, not even for a moment
    try:
        zmq.auth.create_certificates(str(directory), name)
    except OSError as err:
        raise UserError(f"keys new: cannot write into {directory} ({err.strerror})") from None
    finally:
        os.umask(old_umask)
    os.chmod(secret, 0o600)
    os.chmod(public, 0o644)
    return public, secret


def check_curve_config(secret_key: str | None, allowed_clients: str | None) -> list[str]:
    """check-config's view of the CURVE keys: each problem names its config key."""
    problems = []
    if secret_key:
        try:
            load_secret_key(secret_key, "publisher.curve_secret_key")
        except UserError as err:
            problems.append(str(err))
        if allowed_clients is None:
            problems.append('publisher.curve_allowed_clients: needed with curve_secret_key: a directory of the '
                            'client NAME.key files allowed to connect, or "*" for any client (no authentication)')
    if allowed_clients and allowed_clients != ALLOW_ANY:
        if not secret_key:
            problems.append("publisher.curve_allowed_clients: only used with publisher.curve_secret_key")
        try:
            allowed_client_keys(allowed_clients, "publisher.curve_allowed_clients")
        except UserError as err:
            problems.append(str(err))
    return problems
