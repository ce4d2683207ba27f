"""The source files that write a generated module: the import closure of its generator.

A cache key must change whenever the code that writes a module does. Naming those files by hand
went stale (three hand-kept lists that already differed), so the files are found the way Python
finds them: from the generator's modules, every ``import`` and ``from ... import`` inside the
package, at module level or inside a function, followed transitively.

>>> files = import_closure(("backend.numba",))
>>> "backend/numba/scalar.py" in files and "train/optim.py" not in files
True
"""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the package (this file is in build/)
PACKAGE = ROOT.name

__all__ = ["import_closure", "imports_of"]


def _file(parts: tuple[str, ...]) -> Path | None:
    """The source of the module ``symgrad.<parts>`` (a module file or a package's
    ``__init__.py``), or None when there is none."""
    base = ROOT.joinpath(*parts)
    for p in (base.with_suffix(".py"), base / "__init__.py"):
        if p.is_file():
            return p
    return None


def _package_of(path: Path) -> tuple[str, ...]:
    """The package a source file belongs to (a module's folder; a package's own folder)."""
    return path.relative_to(ROOT).with_suffix("").parts[:-1]


def _module_level(tree: ast.Module):
    """The nodes of a module outside its functions (imports run when the module is)."""
    todo = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            continue
        yield node
        todo.extend(ast.iter_child_nodes(node))


#: an import statement at the start of a line (a parenthesised name list may span lines)
_IMPORT = re.compile(r"^[ \t]*(from[ \t]+[.\w]+[ \t]+import[ \t]+(?:\([^)]*\)|[^\n]*)"
                     r"|import[ \t]+[^\n]*)", re.M)


def _import_statements(text: str):
    """The import statements of a source text, wherever they stand (module or function level),
    parsed one by one: parsing and walking the whole file cost ~0.2 s for a closure of the
    package, paid by the first compile of every process."""
    for m in _IMPORT.finditer(text):
        try:
            yield from ast.parse(m.group(1).strip()).body
        except SyntaxError:  # an 'import' line inside a string: not a statement
            continue


def imports_of(path: Path, module_level: bool = False, parents: bool = True) -> set[Path]:
    """The package's modules that the source file ``path`` imports: anywhere in it, or only
    those imported when it is (``module_level``). ``parents``: also the packages' ``__init__``
    files that importing a submodule runs (what a cache key must cover); without them, each
    import is one edge to the module it names (what an import cycle is made of)."""
    pkg = _package_of(path)
    found: set[Path] = set()

    def add(parts: tuple[str, ...]) -> bool:
        if parents:  # importing a.b.c runs a/__init__, a/b/__init__, then a/b/c
            found.update(f for k in range(1, len(parts)) if (f := _file(parts[:k])))
        f = _file(parts)
        if f is not None:
            found.add(f)
        return f is not None

    text = path.read_text(encoding="utf-8")
    nodes = _module_level(ast.parse(text)) if module_level else _import_statements(text)
    for node in nodes:
        if isinstance(node, ast.Import):
            for alias in node.names:
                head, *rest = alias.name.split(".")
                if head == PACKAGE:
                    add(tuple(rest))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg[:len(pkg) - (node.level - 1)]
                mod = tuple(node.module.split(".")) if node.module else ()
            elif (node.module or "").split(".")[0] == PACKAGE:
                base, mod = (), tuple(node.module.split("."))[1:]
            else:
                continue
            # `from a import x`: x is a submodule of a, or a name that a's file defines
            subs = [add(base + mod + (alias.name,)) for alias in node.names]
            if parents or not all(subs):
                add(base + mod)
    return found


@functools.cache
def import_closure(roots: tuple[str, ...]) -> tuple[str, ...]:
    """The package's source files (paths relative to the package, sorted) that the modules
    ``roots`` (dotted names inside the package, e.g. ``"backend.numba.array_module"``) import,
    themselves included, transitively. The package's own ``__init__.py`` is left out: it imports
    everything, and the version is hashed on its own."""
    todo = []
    for r in roots:
        f = _file(tuple(r.split(".")))
        if f is None:
            raise ValueError(f"no module {PACKAGE}.{r}")
        todo.append(f)
    seen: set[Path] = set()
    top = ROOT / "__init__.py"
    while todo:
        f = todo.pop()
        if f in seen or f == top:
            continue
        seen.add(f)
        todo.extend(imports_of(f) - seen)
    return tuple(sorted(p.relative_to(ROOT).as_posix() for p in seen))
