"""The layout's promises, read from the source: who may import whom, and no import cycles.

The board side (``runtime/``, ``board/``) installs without torch and runs on a Raspberry Pi, so a
single ``import torch`` (or an import of ``offline``, which imports torch) anywhere in it, even
inside a function, breaks a board install on the first call that reaches it. The graph is read
with ``ast`` from every module of the package, imports inside functions included, so a lazy import
cannot hide a forbidden edge or a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Set, Tuple

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "spikeedge"
SKIP_DIRS = {"tests", "benchmarks", "tools", "docs", ".venv", "build", "dist", ".git"}

# Top-level subpackage -> modules it must never import (a prefix match on the dotted name).
FORBIDDEN: Dict[str, Tuple[str, ...]] = {
    "runtime": ("torch", "spikeedge.offline", "spikeedge.deploy", "spikeedge.results", "spikeedge.measure",
                "spikeedge.board", "spikeedge.cli"),
    "board": ("torch", "spikeedge.offline", "spikeedge.deploy", "spikeedge.results", "spikeedge.measure",
              "spikeedge.runtime", "spikeedge.cli"),
    "measure": ("torch", "spikeedge.offline", "spikeedge.deploy", "spikeedge.results", "spikeedge.cli"),
    "tasks": ("spikeedge.runtime", "spikeedge.board", "spikeedge.measure", "spikeedge.deploy", "spikeedge.cli"),
}


def module_files(root: Path, package: str = PACKAGE) -> Dict[str, Path]:
    """Every module of the package by dotted name (``pkg/__init__.py`` is ``pkg``)."""
    found: Dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if set(rel.parts[:-1]) & SKIP_DIRS or any(part.startswith(".") for part in rel.parts):
            continue
        parts = list(rel.with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join([package] + parts)] = path
    return found


def imports_of(name: str, path: Path, modules: Set[str]) -> List[str]:
    """The dotted names ``name`` imports (absolute, resolved; submodules where ``from`` names one)."""
    is_package = path.name == "__init__.py"
    base = name.split(".") if is_package else name.split(".")[:-1]
    out: List[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base[: len(base) - (node.level - 1)]
                target = ".".join(anchor + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                candidate = "%s.%s" % (target, alias.name)
                out.append(candidate if candidate in modules else target)
    return out


def import_graph(root: Path, package: str = PACKAGE) -> Dict[str, Set[str]]:
    files = module_files(root, package)
    names = set(files)
    return {name: set(imports_of(name, path, names)) for name, path in files.items()}


def forbidden_edges(graph: Dict[str, Set[str]], package: str = PACKAGE) -> List[str]:
    bad = []
    for name, targets in sorted(graph.items()):
        parts = name.split(".")
        rules = FORBIDDEN.get(parts[1]) if len(parts) > 1 else None
        for target in sorted(targets):
            for prefix in rules or ():
                prefix = prefix.replace("spikeedge", package, 1)
                if target == prefix or target.startswith(prefix + "."):
                    bad.append("%s imports %s" % (name, target))
    return bad


def cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected components of more than one module (Tarjan), among the package's own modules.

    A package's ``__init__`` re-exporting its submodules is not a cycle with them: the edges from a
    submodule up to its own package's ``__init__`` are left out, since Python imports the package
    first in any case.
    """
    own = {n: {t for t in ts if t in graph and not n.startswith(t + ".")} for n, ts in graph.items()}
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    found: List[List[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(own[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(own):
        if v not in index:
            visit(v)
    return found


def test_board_side_imports_neither_torch_nor_the_workstation() -> None:
    assert forbidden_edges(import_graph(ROOT)) == []


def test_no_import_cycles() -> None:
    assert cycles(import_graph(ROOT)) == []


def test_the_checks_see_a_lazy_forbidden_import_and_a_cycle(tmp_path: Path) -> None:
    """The checker itself: a synthetic tree with a torch import inside a function and a two-module cycle."""
    pkg = tmp_path
    for folder in ("runtime", "board", "offline"):
        (pkg / folder).mkdir()
        (pkg / folder / "__init__.py").write_text('"""x"""\n')
    (pkg / "runtime" / "a.py").write_text("from . import b\n\ndef f():\n    import torch\n    return torch\n")
    (pkg / "runtime" / "b.py").write_text("from .a import f\n")
    (pkg / "board" / "meter.py").write_text("from ..offline import model\n")
    (pkg / "offline" / "model.py").write_text("import torch\n")
    graph = import_graph(pkg, "fake")
    assert forbidden_edges(graph, "fake") == ["fake.board.meter imports fake.offline.model", "fake.runtime.a imports torch"]
    assert cycles(graph) == [["fake.runtime.a", "fake.runtime.b"]]


def test_the_graph_covers_the_whole_package() -> None:
    graph = import_graph(ROOT)
    for expected in ("spikeedge.runtime.bundle", "spikeedge.runtime.sessions", "spikeedge.board", "spikeedge.measure.bench",
                     "spikeedge.offline.lnp.loop", "spikeedge.cli.app"):
        assert any(name == expected or name.startswith(expected + ".") for name in graph), expected
    assert "spikeedge.runtime.conv_session" in graph["spikeedge.runtime.sessions"]


def test_every_package_folder_is_in_the_wheel() -> None:
    """pyproject lists packages by hand (the repository root is the package): a folder with an
    ``__init__.py`` that is not listed would be missing from every wheel and every board install."""
    tomllib = __import__("pytest").importorskip("tomllib")
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]["packages"])
    folders = {name for name, path in module_files(ROOT).items() if path.name == "__init__.py"}
    assert folders - listed == set()
    assert listed - folders == set()
