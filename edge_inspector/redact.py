"""Keep credentials out of everything the daemon prints or stores.

IP cameras are addressed as ``rtsp://admin:secret@10.0.0.7/stream`` or with
``?user=admin&password=secret`` in the query.  Those URIs travel into log lines, status events
(which are journalled and published), record manifests, metrics and error messages, all of which
people copy into tickets and chat.  :func:`redact_uri` masks the password (the user name stays:
it helps to see *which* account failed), :func:`redact_text` does the same for any URI inside free
text (FFmpeg's own messages included), and :class:`RedactingFilter` applies it to every log record.
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

MASK = "***"
#: query parameters whose values are secrets (matched case-insensitively, as whole names)
SECRET_PARAMS = ("password", "passwd", "pass", "pwd", "secret", "token", "auth", "key", "apikey", "api_key")
_SECRET_PARAM_RE = re.compile(r"(?i)([?&;](?:" + "|".join(SECRET_PARAMS) + r")=)[^&#\s'\"]*")
#: ``scheme://user:password@`` anywhere in text; the password runs to the last '@' before the
#: host (unencoded '@' in passwords is common), never across '/' or white space
_USERINFO_RE = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://[^/@\s:'\"]*:)[^/\s'\"]*(@)")


def redact_uri(uri: str) -> str:
    """``rtsp://admin:secret@cam/x?pwd=1`` -> ``rtsp://admin:***@cam/x?pwd=***``."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return redact_text(uri)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user, sep, _password = userinfo.partition(":")
        netloc = f"{user}:{MASK}@{host}" if sep else f"{user}@{host}"
    query = _SECRET_PARAM_RE.sub(lambda m: m.group(1) + MASK, "?" + parts.query)[1:] if parts.query else ""
    if parts.scheme and (netloc != parts.netloc or query != parts.query):
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    return redact_text(uri)


def redact_text(text: str) -> str:
    """Mask passwords of every URI found in ``text`` (log lines, error messages, FFmpeg output)."""
    if "://" not in text and "=" not in text:
        return text
    text = _USERINFO_RE.sub(lambda m: m.group(1) + MASK + m.group(2), text)
    return _SECRET_PARAM_RE.sub(lambda m: m.group(1) + MASK, text)


def redact_config(data: Any) -> Any:
    """A config dump (``Config.model_dump``) with URIs redacted and secret values masked.

    Used for ``record``'s manifest, which people share to debug a line.
    """
    if isinstance(data, dict):
        out = {}
        for key, value in data.items():
            if isinstance(value, str) and _is_inline_secret(key, value):
                out[key] = MASK
            else:
                out[key] = redact_config(value)
        return out
    if isinstance(data, list):
        return [redact_config(v) for v in data]
    if isinstance(data, str):
        return redact_uri(data) if "://" in data else data
    return data


def _is_inline_secret(key: str, value: str) -> bool:
    """A key named like a secret whose value is not an existing file (an inline key or password).

    Z85 keys may start with '/' or '.', so only a path that exists counts as a path.
    """
    import os

    lowered = key.lower()
    if not any(word in lowered for word in ("secret", "password", "token")):
        return False
    return not os.path.isfile(os.path.expanduser(value))


class RedactingFilter(logging.Filter):
    """Rewrites each record's message with :func:`redact_text` before any handler formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string is the handler's problem to show
            return True
        clean = redact_text(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True
