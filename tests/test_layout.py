"""The package's layout: small modules and no import cycles (issue 21).

Every module is under about 400 lines (issue 12 split check.py, 1,256 lines, and codegen.py,
899); a few that are still over are listed with their size, which may only shrink. No import
cycle exists between modules when they are imported (function-level imports excluded: those that
still close a cycle are listed, and the list may only shrink). A module of the package is
imported inside a function only when it is on a short allow-list with its reason
(``LAZY_ALLOWED``: CLI start-up); optional dependencies (dask, matplotlib, tqdm, ...) are not the
package's and are not listed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from symgrad.build import writers

PKG = Path(__file__).resolve().parent.parent / "symgrad"
MODULES = sorted(PKG.rglob("*.py"))
LIMIT = 400
#: modules still over the limit, with the size they may not exceed (split them by what they do)
OVER: dict[str, int] = {}
#: cycles closed only by function-level imports (may only go away)
LAZY_CYCLES: list[set[str]] = []


def _rel(p: Path) -> str:
    return p.relative_to(PKG).as_posix()


@pytest.mark.parametrize("path", MODULES, ids=_rel)
def test_module_is_a_small_room(path):
    lines = len(path.read_text().splitlines())
    limit = OVER.get(_rel(path), LIMIT)
    assert lines <= limit, f"{_rel(path)}: {lines} lines (limit {limit}): split it by what it does"


def _cycles(module_level: bool) -> list[set[str]]:
    """The strongly connected components (more than one module) of the import graph."""
    graph = {f: writers.imports_of(f, module_level=module_level, parents=False) for f in MODULES}
    index: dict = {}
    low: dict = {}
    stack: list = []
    on: set = set()
    out: list[set[str]] = []

    def visit(v):  # Tarjan
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(_rel(w))
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    for v in MODULES:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_between_modules():
    assert _cycles(module_level=True) == []


def test_function_level_imports_close_no_new_cycle():
    for cycle in _cycles(module_level=False):
        assert any(cycle <= known for known in LAZY_CYCLES), f"a new import cycle: {sorted(cycle)}"


#: the only function-level imports of the package's own modules, by file: each is on the list
#: with its reason, so a new lazy import fails here (hoist it, or add it with a reason)
LAZY_ALLOWED: dict[str, dict[str, str]] = {
    "cli.py": {  # CLI start-up: each command imports what it needs
        "symgrad": "the facade (sg.compile, sg.optim, sg.schedules) inside the commands",
        "symgrad.columns": "load_loss: column names checked only for a string loss",
        "symgrad.lang.parse": "load_loss: the safe parser, only for a string loss",
        "symgrad.lang.symbols": "load_loss: Param, only for a string loss",
        "symgrad.plot": "--plot only: imports matplotlib (an optional dependency)",
        "symgrad.demo": "the demo command only",
        "symgrad.version": "--version only",
        "symgrad.lsq.command": "the fit command's parser and runner",
    },
}


def _lazy_imports(path: Path) -> set[str]:
    """The package's modules (dotted names) that ``path`` imports inside a function: for
    ``from a import b``, ``a.b`` when that is a module, else ``a``."""
    pkg = ("symgrad", *path.relative_to(PKG).parent.parts)
    found: set[str] = set()

    def named(parts: tuple[str, ...]) -> bool:
        base = PKG.parent.joinpath(*parts)
        return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()

    for fn in ast.walk(ast.parse(path.read_text())):
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(fn):
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.split(".")[0] == "symgrad")
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = pkg[:len(pkg) - (node.level - 1)]
                    base += tuple(node.module.split(".")) if node.module else ()
                elif (node.module or "").split(".")[0] == "symgrad":
                    base = tuple(node.module.split("."))
                else:
                    continue
                for a in node.names:
                    sub = (*base, a.name)
                    found.add(".".join(sub if named(sub) else base))
    return found


@pytest.mark.parametrize("path", MODULES, ids=_rel)
def test_function_level_imports_are_on_the_allow_list(path):
    allowed = set(LAZY_ALLOWED.get(_rel(path), {}))
    extra = _lazy_imports(path) - allowed
    assert not extra, (f"{_rel(path)} imports {sorted(extra)} inside a function: import at "
                       f"module level (no cycle? tests above), or add it to LAZY_ALLOWED with why")


def test_the_allow_list_has_no_stale_entry():
    for rel, allowed in LAZY_ALLOWED.items():
        stale = set(allowed) - _lazy_imports(PKG / rel)
        assert not stale, f"{rel} no longer imports {sorted(stale)} lazily: drop them from the list"
