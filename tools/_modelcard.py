"""Shared helpers for training tools: update one section of ``engines/manifest.toml`` and one
section of ``engines/README.md`` without touching the others.

Several models live in one engines directory and are trained by different tools, possibly at
the same time, so every write is read-modify-write of just the named section (and an atomic
rename, so a reader never sees a half-written file).
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

import tomli_w

from edge_inspector.tomlcompat import tomllib

_README_TITLE = "# Shipped models\n\nModel cards for the ONNX files in this directory; `manifest.toml` pins their hashes.\n"


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def update_manifest_section(engines_dir: Path, name: str, section: dict[str, Any]) -> Path:
    """Replace table ``[name]`` in ``engines_dir/manifest.toml``, keeping every other table."""
    engines_dir = Path(engines_dir)
    engines_dir.mkdir(parents=True, exist_ok=True)
    path = engines_dir / "manifest.toml"
    data: dict[str, Any] = tomllib.loads(path.read_text()) if path.is_file() else {}
    data.setdefault("schema_version", 1)
    data[name] = section
    ordered = {"schema_version": data.pop("schema_version"), **data}
    header = "# Written by tools/train_*.py; edit by re-running the training/export tool.\n"
    _atomic_write(path, header + tomli_w.dumps(ordered))
    return path


def update_readme_section(engines_dir: Path, name: str, markdown: str) -> Path:
    """Replace the text between ``<!-- BEGIN name -->`` and ``<!-- END name -->`` (or append)."""
    engines_dir = Path(engines_dir)
    engines_dir.mkdir(parents=True, exist_ok=True)
    path = engines_dir / "README.md"
    text = path.read_text() if path.is_file() else _README_TITLE
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    block = f"{begin}\n{markdown.strip()}\n{end}"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _m: block, text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    _atomic_write(path, text)
    return path
