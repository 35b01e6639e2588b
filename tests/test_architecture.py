"""The rules between packages and modules (docs/architecture.md), checked on the source.

Pure: reads the project's own ``.py`` files with ``ast``; nothing is imported.  Every
import counts, also one inside a function: a circle dodged by a late import is still a
circle.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("labwitness", "recorder", "camera_discovery", "storage", "index", "retention", "api", "simulator")
#: package -> packages it must never import (docs/architecture.md, "Rules between packages")
FORBIDDEN = {
    "labwitness": {"recorder", "camera_discovery", "storage", "index", "retention", "api", "simulator"},
    "storage": {"index", "recorder", "retention", "api", "camera_discovery", "simulator"},
    "index": {"storage", "recorder", "retention", "api", "camera_discovery", "simulator"},
    "camera_discovery": {"index", "storage", "recorder", "retention", "api", "simulator"},
    "recorder": {"retention", "api", "camera_discovery", "simulator"},
    "retention": {"api", "recorder", "camera_discovery", "simulator"},
    "simulator": {"api", "index", "storage", "recorder", "retention"},
}
#: modules allowed beyond MAX_LINES: one job that reads better whole (each says why in its docstring)
MAX_LINES = 420
SQL_NAMES = {"Session", "select", "text", "delete", "update", "insert", "func"}


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        base = ROOT / pkg
        if not base.is_dir():
            continue
        for p in base.rglob("*.py"):
            rel = p.relative_to(ROOT).with_suffix("")
            if "migrations" in rel.parts:
                continue
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = p
    return out


MODULES = _modules()


def _resolve(mod: str, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    is_pkg = MODULES[mod].name == "__init__.py"
    base = mod.split(".")
    base = base if is_pkg else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(mod: str) -> set[str]:
    """Project modules ``mod`` imports (anywhere in the file), resolved to modules."""
    tree = ast.parse(MODULES[mod].read_text(encoding="utf-8"))
    out: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(mod, node)
            # `from pkg import module` is an edge to the module, not to the package's __init__
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        for n in names:
            # the longest prefix that is a project module
            parts = n.split(".")
            for i in range(len(parts), 0, -1):
                cand = ".".join(parts[:i])
                if cand in MODULES and cand != mod:
                    out.add(cand)
                    break
    return out


GRAPH = {m: _imports(m) for m in MODULES}


def test_no_package_imports_what_it_must_not():
    bad = []
    for mod, deps in GRAPH.items():
        pkg = mod.split(".")[0]
        for d in deps:
            if d.split(".")[0] in FORBIDDEN.get(pkg, ()):
                bad.append(f"{mod} -> {d}")
    assert not bad, "imports against the package rules (docs/architecture.md):\n" + "\n".join(sorted(bad))


def _cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    return out


def test_no_import_circles_between_modules():
    cycles = _cycles()
    assert not cycles, "import circles (a late import inside a function counts too):\n" + "\n".join(
        " <-> ".join(c) for c in cycles)


def test_api_holds_no_sql():
    """The index package owns the queries; api/ calls them."""
    bad = []
    for mod, path in MODULES.items():
        if not mod.startswith("api"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in ("sqlmodel", "sqlalchemy"):
                names = {a.name for a in node.names} & SQL_NAMES
                if names:
                    bad.append(f"{mod}: from {node.module} import {', '.join(sorted(names))}")
            elif isinstance(node, ast.Import) and any(a.name.split(".")[0] in ("sqlmodel", "sqlalchemy") for a in node.names):
                bad.append(f"{mod}: import {', '.join(a.name for a in node.names)}")
    assert not bad, "SQL in api/ (move the query into index/):\n" + "\n".join(bad)


@pytest.mark.parametrize("mod", sorted(MODULES))
def test_module_is_one_job(mod):
    """No module over ~400 lines unless it is one job that reads better whole and says so."""
    text = MODULES[mod].read_text(encoding="utf-8")
    lines = text.count("\n")
    if lines <= MAX_LINES:
        return
    doc = ast.get_docstring(ast.parse(text)) or ""
    assert "reads better whole" in doc, f"{mod} has {lines} lines: split it by job, or say in its docstring why it " \
                                        f"is one job that reads better whole"


def test_every_package_says_what_it_owns():
    for pkg in PACKAGES:
        init = ROOT / pkg / "__init__.py"
        if init.exists():
            doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))) or ""
            assert len(doc) > 40, f"{pkg}/__init__.py: the docstring says what the package owns"
