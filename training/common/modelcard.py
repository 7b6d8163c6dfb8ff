"""Shared helpers for training tools: update one model of ``engines/manifest.toml`` and one
section of ``engines/README.md`` without touching the others.

Several models live in one engines directory and are trained by different tools, possibly at
the same time, so every write is read-modify-write of just the named section (and an atomic
rename, so a reader never sees a half-written file).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from edge_inspector.atomic import atomic_write_text
from edge_inspector.manifest import Manifest, load_or_empty, replace_entry, write_manifest

_README_TITLE = "# Shipped models\n\nModel cards for the ONNX files in this directory; `manifest.toml` pins their hashes.\n"


def update_manifest_section(engines_dir: Path, modality: str, section: dict[str, Any]) -> Path:
    """Put the ``modality`` model described by ``section`` into ``engines_dir/manifest.toml`` in
    place of the model of the same kind, keeping every other model (validated as when loading)."""
    entry = Manifest(**{modality: section}).entries(modality)[0]
    return write_manifest(replace_entry(load_or_empty(Path(engines_dir)), modality, entry))


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
    atomic_write_text(path, text)
    return path
