"""The code's shape, checked: data flows one way, so imports point down, never up, never round.

Every module of ``edge_inspector`` belongs to one layer (the longest prefix in :data:`LAYERS`
wins); a module may import its own layer and the layers below it. The walk reads each file's
imports, the ones inside functions too (they run, later); imports under ``if TYPE_CHECKING:``
never run and only name a type a function receives, so they are left out. It fails on an import
from a lower layer to a higher one, on any cycle between modules, and on a module over 400 lines.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "edge_inspector"
MAX_LINES = 400

#: bottom first; a module may import its own layer and those listed before it
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundation", ("edge_inspector", "errors", "tomlcompat", "atomic", "redact", "values", "image_header",
                    "native_log", "memory", "stop_signals", "supervision", "http_server")),
    ("models and media", ("features", "manifest", "model_entries", "precision", "synthetic", "pictures", "runtime")),
    ("sources", ("sources",)),
    ("inspectors", ("inspectors",)),
    ("events", ("events", "client", "sinks.mqtt_config", "sinks.plc_config", "snapshots.config")),
    ("integrations", ("sinks", "snapshots", "learn", "logger", "health", "metrics", "console")),
    ("config", ("config",)),
    ("application", ("checks", "service", "service_wiring", "service_metrics", "web", "recorder", "replay", "evaluation", "offline",
                     "client_config")),
    ("commands", ("commands", "cli")),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int:
    best, rank = -1, -1
    for i, (_name, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            full = prefix if prefix == "edge_inspector" else f"edge_inspector.{prefix}"
            if (module == full or module.startswith(full + ".")) and len(full) > best:
                best, rank = len(full), i
    assert rank >= 0, f"{module} is in no layer: add it to LAYERS"
    return rank


def _type_checking_only(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The ``edge_inspector`` modules ``path`` imports (``from pkg import mod`` counts as ``pkg.mod``)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if _type_checking_only(node):
            for child in getattr(node, "orelse", []):
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return {m for m in found if m in modules and m != name}


def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: imports_of(path, set(files)) for name, path in files.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    out.append(sorted(group))
    return out


def test_no_module_imports_a_layer_above_its_own() -> None:
    upward = [f"{a} ({LAYERS[layer_of(a)][0]}) imports {b} ({LAYERS[layer_of(b)][0]})"
              for a, targets in sorted(graph().items()) for b in sorted(targets) if layer_of(b) > layer_of(a)]
    assert upward == []


def test_no_import_cycles() -> None:
    assert cycles(graph()) == []


def test_no_module_over_400_lines() -> None:
    long = {str(p.relative_to(ROOT)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}


def test_the_walk_sees_an_upward_import_a_cycle_and_a_function_level_import(tmp_path: Path) -> None:
    """The checks above can fail: a lower module importing a higher one is found, inside a function too."""
    modules = {"edge_inspector.sources.x", "edge_inspector.config", "edge_inspector.values"}
    source = tmp_path / "edge_inspector" / "sources" / "x.py"
    source.parent.mkdir(parents=True)
    source.write_text("from typing import TYPE_CHECKING\nfrom edge_inspector import values\n"
                      "if TYPE_CHECKING:\n    from edge_inspector.service import Service\n"
                      "def f():\n    from edge_inspector.config import Config\n")
    global ROOT
    saved, ROOT = ROOT, tmp_path
    try:
        found = imports_of(source, modules)
    finally:
        ROOT = saved
    assert found == {"edge_inspector.values", "edge_inspector.config"}
    assert layer_of("edge_inspector.config") > layer_of("edge_inspector.sources.x")
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_readme_code_layout_names_every_module() -> None:
    """Each module is named in the README's code-layout table, in the row of its directory."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index("Code layout, in layers")
    rows = [line for line in readme[start:].split("\n\n", 2)[1].splitlines() if line.startswith("| `")]
    unnamed = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if path.name == "__init__.py":
            continue
        folder = rel.rpartition("/")[0] + "/"
        named = False
        for row in rows:
            paths = re.findall(r"`([^`]+)`", row.split("|")[1])
            if rel in paths:
                named = True
            for listed in (p for p in paths if p.endswith("/") and folder.startswith(p)):
                if f"`{rel[len(listed):]}`" in row or f"`{path.name}`" in row:
                    named = True
        if not named:
            unnamed.append(rel)
    assert unnamed == []
