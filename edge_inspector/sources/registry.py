"""Source kinds, found by scheme: one module per kind under ``sources/kinds``.

A kind declares, in its own module, the URI scheme(s) it serves, its typed settings (a pydantic
model, so a key only it understands is offered to nothing else), ``check()`` for
``check-config`` and ``open()`` for the capture thread.  The registry imports every module of
the package and collects their ``KINDS``: adding a kind is adding a module, nothing is listed
by hand elsewhere.  :func:`open_source` gives every user of sources (the daemon, ``record``,
``replay``) the same queue policy: a live source drops the oldest item when the inspector is
behind, a file blocks so nothing is skipped.
"""

from __future__ import annotations

import importlib
import pkgutil
import threading
from dataclasses import dataclass
from typing import Annotated, Any, Callable, Literal, Union

from pydantic import ConfigDict, Discriminator, Tag, field_validator

from edge_inspector.sources.base import BoundedQueue, SourceThread, StatusCallback
from edge_inspector.sources.frames import Prepare
from edge_inspector.sources.settings import Settings, SourceSettings, uri_scheme

Media = Literal["camera", "microphone"]


@dataclass(frozen=True)
class OpenContext:
    """What the pipeline tells a source when it opens it."""

    prepare: Prepare | None = None  # cameras: make the model input in the capture thread
    sample_rate: int = 16000  # microphones: the rate the acoustic model wants


#: (settings, queue, on_status, context) -> the capture thread, not started
Opener = Callable[[Any, BoundedQueue[Any], "StatusCallback | None", OpenContext], SourceThread[Any]]
#: (settings, devices) -> problems, each "key: message" with the key inside the source's table;
#: ``devices=False``: leave out what needs the device to be there right now
Checker = Callable[[Any, bool], list[str]]


def _no_checks(_settings: Any, _devices: bool) -> list[str]:
    return []


@dataclass(frozen=True)
class SourceKind:
    """One kind of source, as its module declares it."""

    media: Media
    schemes: tuple[str, ...]
    settings: type[SourceSettings]
    open: Opener
    usage: str  # how its URI is written, for messages: "v4l2:///dev/video0"
    check: Checker = _no_checks
    live: bool = True  # live: reconnects and drops the oldest item when behind; file: blocks, never skips
    #: check-config asks these kinds' devices in parallel threads (network cameras: each check waits on a timeout)
    parallel_check: bool = False


_lock = threading.Lock()
_kinds: list[SourceKind] | None = None


def all_kinds() -> list[SourceKind]:
    """Every kind declared by a module of ``edge_inspector.sources.kinds`` (imported once)."""
    global _kinds
    with _lock:
        if _kinds is None:
            from edge_inspector.sources import kinds as package

            found: list[SourceKind] = []
            for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
                module = importlib.import_module(f"{package.__name__}.{info.name}")
                found.extend(getattr(module, "KINDS", ()))
            _check_unique(found)
            _kinds = found
        return list(_kinds)


def _check_unique(found: list[SourceKind]) -> None:
    seen: dict[tuple[str, str], SourceKind] = {}
    for kind in found:
        for scheme in kind.schemes:
            if (kind.media, scheme) in seen:
                raise RuntimeError(f"two {kind.media} kinds claim the scheme {scheme!r}: "
                                   f"{seen[(kind.media, scheme)].settings.__name__} and {kind.settings.__name__}")
            seen[(kind.media, scheme)] = kind


def kinds_of(media: Media) -> list[SourceKind]:
    return [k for k in all_kinds() if k.media == media]


def kind_for(media: Media, uri: str) -> SourceKind | None:
    """The kind that serves ``uri``'s scheme for this medium, or None."""
    scheme = uri_scheme(uri)
    for kind in kinds_of(media):
        if scheme in kind.schemes:
            return kind
    return None


def kind_of(settings: SourceSettings) -> SourceKind:
    """The kind whose settings model ``settings`` is."""
    for kind in all_kinds():
        if type(settings) is kind.settings:
            return kind
    raise LookupError(f"no source kind has the settings model {type(settings).__name__}")


# ---- typed config: the kind's settings model, selected by the URI's scheme ----------------------
def _tag(kind: SourceKind) -> str:
    return f"<{kind.media} {kind.schemes[0]}>"  # never a config key: the config's error paths leave it out


def is_tag(part: object) -> bool:
    return isinstance(part, str) and part.startswith("<") and part.endswith(">")


def _unknown_settings(media: Media) -> type[Settings]:
    """What a source with no known scheme validates as: one error, on its ``uri``."""
    usage = ", ".join(k.usage for k in kinds_of(media))

    class UnknownSource(Settings):
        model_config = ConfigDict(extra="ignore")  # its other keys mean nothing until the scheme is right
        uri: str

        @field_validator("uri")
        @classmethod
        def _scheme(cls, uri: str) -> str:
            raise ValueError(f"unknown {media} URI scheme {uri_scheme(uri) or uri!r}; use one of: {usage}")

    return UnknownSource


def settings_type(media: Media) -> Any:
    """The pydantic type of one ``[[camera]]`` / ``[[microphone]]`` table: its kind's model, by scheme."""
    kinds = kinds_of(media)
    unknown = f"<{media} ?>"

    def discriminate(value: Any) -> str:
        uri = value.get("uri") if isinstance(value, dict) else getattr(value, "uri", None)
        kind = kind_for(media, uri) if isinstance(uri, str) else None
        return _tag(kind) if kind is not None else unknown

    members = [Annotated[k.settings, Tag(_tag(k))] for k in kinds]
    members.append(Annotated[_unknown_settings(media), Tag(unknown)])
    return Annotated[Union[tuple(members)], Discriminator(discriminate)]


def source_settings(media: Media, **table: Any) -> SourceSettings:
    """One ``[[camera]]`` / ``[[microphone]]`` table as its kind's settings (pydantic errors as raised)."""
    from pydantic import TypeAdapter

    return TypeAdapter(settings_type(media)).validate_python(table)  # type: ignore[no-any-return]


def keys_elsewhere(media: Media, key: str) -> list[str]:
    """The kinds whose settings have ``key`` (for "only for …" instead of "unknown key")."""
    return [k.usage for k in kinds_of(media) if key in k.settings.model_fields]


# ---- opening: the queue policy for the daemon, record and replay alike ---------------------------
def open_source(
    settings: SourceSettings,
    on_status: StatusCallback | None = None,
    context: OpenContext = OpenContext(),
    wakeup: threading.Condition | None = None,
    min_size: int = 0,
    min_file_size: int = 0,
) -> tuple[SourceThread[Any], BoundedQueue[Any]]:
    """The source's capture thread (not started) and its queue.

    Live: the queue holds ``queue_size`` items and drops the oldest when the consumer is behind
    (latency stays bounded; every drop is counted).  File: it blocks the reader instead, so
    nothing is skipped, and may be larger (``min_file_size``: room to decode the next batch).
    """
    kind = kind_of(settings)
    size = max(settings.queue_size, min_size, 0 if kind.live else min_file_size)
    queue: BoundedQueue[Any] = BoundedQueue(size, "drop_oldest" if kind.live else "block", wakeup)
    return kind.open(settings, queue, on_status, context), queue


# ---- check-config -------------------------------------------------------------------------------
def check_sources(media: Media, sources: list[SourceSettings], devices: bool = True) -> list[str]:
    """Every problem of the enabled sources, each "camera[1].uri: …" (as the config file is indexed).

    Kinds that wait on the network (``parallel_check``) are asked all at once.
    """
    from concurrent.futures import ThreadPoolExecutor

    jobs = [(i, s, kind_of(s)) for i, s in enumerate(sources) if s.enabled]
    parallel = [(i, s, k) for i, s, k in jobs if k.parallel_check]
    answers: dict[int, list[str]] = {}
    if parallel:
        with ThreadPoolExecutor(max_workers=min(8, len(parallel))) as pool:
            for (i, _s, _k), problems in zip(parallel, pool.map(lambda job: job[2].check(job[1], devices), parallel)):
                answers[i] = problems
    for i, s, k in jobs:
        if i not in answers:
            answers[i] = k.check(s, devices)
    return [f"{media}[{i}].{problem}" for i in sorted(answers) for problem in answers[i]]
