"""Writes a reader never sees half done: a file replaced in one rename, a directory swapped in two.

The daemon may start, or another tool read, while a model directory is being (re)written; a
power cut may come at any moment.  Each helper leaves either the old content or the new one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path


def atomic_write_text(path: Path, text: str, mode: int = 0o644) -> Path:
    """Write ``text`` to a temporary file beside ``path``, then rename it over ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def staging_dir(target: Path) -> Path:
    """A new empty directory beside ``target`` (same file system, so it can be renamed onto it)."""
    target = Path(target).absolute()
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.new-"))


@contextlib.contextmanager
def replacing_dir(target: Path, check: Callable[[Path], object]) -> Iterator[Path]:
    """A staging directory to fill in the ``with`` block; once ``check`` accepts it, it takes the
    place of ``target`` (:func:`replace_dir`).  Anything that fails on the way removes it, so
    ``target`` stays as it was."""
    staged = staging_dir(target)
    try:
        yield staged
        check(staged)
        replace_dir(staged, target)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise


def replace_dir(staged: Path, target: Path) -> None:
    """Put the finished ``staged`` directory in place of ``target`` (which may not exist).

    An existing ``target`` is first renamed aside, then ``staged`` renamed to ``target``, then
    the old one removed: at every instant ``target`` is complete (old or new) or, for the few
    microseconds between the two renames, absent -- never a mix of both.
    """
    target = Path(target).absolute()
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old-"))
        os.rmdir(old)
        os.rename(target, old)
    try:
        os.rename(staged, target)
    except BaseException:
        if old is not None:
            os.rename(old, target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
