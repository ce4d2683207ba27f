"""The cache key's code digest covers every file that writes a module (its import closure)."""

from pathlib import Path

import pytest

from symgrad.build import cache, writers


def test_closure_covers_what_the_hand_kept_lists_named_and_what_they_missed():
    scalar = writers.import_closure(("backend.numba", "ad.derive", "ir.problem"))
    for f in ("backend/numba/printer.py", "ir/functions.py", "ir/problem.py", "ir/symtypes.py",
              "ad/derive.py", "backend/numba/scalar.py", "backend/numba/samples.py",
              "backend/numba/vectors.py"):
        assert f in scalar, f
    array = writers.import_closure(("backend.numba.array_module", "ir.array_problem"))
    # the old array list lacked symbols.py and problem.py, which the array front end imports
    for f in ("ad/array.py", "backend/numba/emit.py", "backend/numba/gemm.py", "lang/symbols.py",
              "ir/problem.py", "backend/numba/printer.py"):
        assert f in array, f
    assert "train/optim.py" not in scalar and "train/optim.py" not in array


def _package(tmp_path: Path) -> Path:
    pkg = tmp_path / "fakepkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from . import a, d\n")
    (pkg / "a.py").write_text("def f():\n    from .sub import b  # a function-level import\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("from ..c import x\nimport fakepkg.e\n")
    (pkg / "c.py").write_text("x = 1\n")
    (pkg / "d.py").write_text("y = 2\n")
    (pkg / "e.py").write_text("z = 3\n")
    return pkg


def test_closure_follows_function_level_relative_and_absolute_imports(tmp_path, monkeypatch):
    pkg = _package(tmp_path)
    monkeypatch.setattr(writers, "ROOT", pkg)
    monkeypatch.setattr(writers, "PACKAGE", "fakepkg")
    writers.import_closure.cache_clear()
    try:
        got = writers.import_closure(("a",))
        assert got == ("a.py", "c.py", "e.py", "sub/__init__.py", "sub/b.py")
        with pytest.raises(ValueError, match=r"no module fakepkg\.nothere"):
            writers.import_closure(("nothere",))
    finally:
        writers.import_closure.cache_clear()


def test_digest_changes_when_a_file_of_the_closure_changes(tmp_path, monkeypatch):
    pkg = _package(tmp_path)
    monkeypatch.setattr(writers, "ROOT", pkg)
    monkeypatch.setattr(writers, "PACKAGE", "fakepkg")
    monkeypatch.setattr(cache, "__file__", str(pkg / "build/cache.py"))
    for fn in (writers.import_closure, cache._code_digest):
        fn.cache_clear()
    try:
        before = cache.code_digest("a")
        (pkg / "d.py").write_text("y = 3\n")  # outside the closure: same key
        cache._code_digest.cache_clear()
        assert cache.code_digest("a") == before
        (pkg / "c.py").write_text("x = 2\n")  # inside (through a function-level import)
        cache._code_digest.cache_clear()
        assert cache.code_digest("a") != before
    finally:
        for fn in (writers.import_closure, cache._code_digest):
            fn.cache_clear()
