"""The compile cache: the key covers everything that shapes a module, entries are verified before
they run, other users' files are refused, corruption is rebuilt, and an unusable directory falls
back to a private one (issue 11, items 1, 9, 10, 11)."""

from __future__ import annotations

import errno
import json
import os
import pickle
import signal
import stat
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import symgrad as sg
from symgrad.build import cache

QUAD_A = "(x1 - 1)**2 + 3*(x2 + 2)**2"
QUAD_B = "(x1 + 1)**2 + 5*(x2 - 1)**2"




def _quad(text: str = QUAD_A):
    x1, x2 = sg.params("x1 x2")
    return eval(text, {"x1": x1, "x2": x2})  # a fixed literal of this file


def _forget(f) -> None:
    """Drop the imported module, as if the next compile ran in a new process."""
    sys.modules.pop(f.path.stem, None)


def _vec_loss(order: str):
    i = sg.index("i")
    if order == "uw":
        u = sg.params("u", indexed=True)
        w = sg.params("w", indexed=True)
    else:
        w = sg.params("w", indexed=True)
        u = sg.params("u", indexed=True)
    return sg.sum((u[i] - 1)**2 + 10*(w[i] - 2)**2, (i, 0, u.length))


# ------------------------------------------------------------------------------ item 1: the key


@pytest.mark.slow  # -m slow (4 s of compile, cold)
def test_vector_order_is_part_of_the_key(cdir):
    f = sg.compile(_vec_loss("uw"))
    g = sg.compile(_vec_loss("wu"))
    assert f.params == ("u[:]", "w[:]") and g.params == ("w[:]", "u[:]")
    assert f.path != g.path
    assert f.value([1.0, 2.0]) == 0.0
    assert g.value([2.0, 1.0]) == 0.0  # was 11.0: g ran f's module, which packs u first
    assert g.value([1.0, 2.0]) == 11.0
    assert g.grad([0.0, 0.0]).tolist() == [-40.0, -2.0]
    assert "# parameters (order of x): w[:], u[:]" in g.path.read_text()
    res = sg.minimize(g, [0.0, 0.0], optimizer=sg.optim.momentum(0.02, 0.5), steps=300)
    np.testing.assert_allclose(res.x, [2.0, 1.0], atol=1e-6)


def test_an_entry_made_for_another_problem_is_rebuilt(cdir):
    f = sg.compile(_vec_loss("uw"))
    g = sg.compile(_vec_loss("wu"))
    _forget(g)
    g.path.write_text(f.path.read_text())  # a valid module, but for the other parameter order
    with pytest.warns(cache.CacheWarning, match="generated for another loss, parameter order"):
        g2 = sg.compile(_vec_loss("wu"))
    assert g2.value([2.0, 1.0]) == 0.0
    assert g2.path.read_text() == g.source


def test_data_column_layout_is_part_of_the_key(cdir):
    a = sg.params("a")
    vec = sg.data("x", shape=(2,))
    mat = sg.data("x", shape=(3, 2))
    f = sg.compile(sg.mean((a * vec[1]) ** 2), fuse=False)  # the array code (fused: per size)
    g = sg.compile(sg.mean((a * mat[1, 1]) ** 2))
    assert f.path != g.path  # the rank shapes the module
    # sizes do not: one module serves every width, and each kernel checks its own
    h = sg.compile(sg.mean((a * sg.data("x", shape=(3,))[1]) ** 2), fuse=False)
    assert h.path == f.path
    assert h.value([2.0], x=np.ones((1, 3))) == 4.0 and f.value([2.0], x=np.ones((1, 2))) == 4.0
    with pytest.raises(ValueError, match="has size 3 on axis 1; the loss needs 2"):
        f.value([2.0], x=np.ones((1, 3)))


# ------------------------------------------------------------------ item 9: verify, trust only us


def test_cache_directory_and_entries_are_private(cdir):
    f = sg.compile(_quad())
    assert stat.S_IMODE(cdir.stat().st_mode) == 0o700
    assert stat.S_IMODE((cdir / "__pycache__").stat().st_mode) == 0o700
    assert stat.S_IMODE(f.path.stat().st_mode) == 0o600


def test_the_default_cache_is_tightened_a_chosen_directory_keeps_its_mode(tmp_path, monkeypatch):
    monkeypatch.setattr(cache, "_USABLE", {})
    monkeypatch.delenv("SYMGRAD_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    own = tmp_path / "xdg" / "symgrad"  # made 0755 by an older symgrad
    own.mkdir(parents=True, mode=0o755)
    os.chmod(own, 0o755)
    assert cache.usable_cache_dir() == own and stat.S_IMODE(own.stat().st_mode) == 0o700
    chosen = tmp_path / "project-cache"
    chosen.mkdir(mode=0o755)
    os.chmod(chosen, 0o755)
    monkeypatch.setenv("SYMGRAD_CACHE_DIR", str(chosen))
    assert cache.usable_cache_dir() == chosen and stat.S_IMODE(chosen.stat().st_mode) == 0o755
    assert stat.S_IMODE((chosen / "__pycache__").stat().st_mode) == 0o700


@pytest.mark.parametrize("edit", [
    lambda t: t + "\nimport os\nos.environ['SYMGRAD_TAMPERED'] = '1'\n",
    lambda t: t.replace("    g[0] = ", "    g[0] = 999.0 + 0*", 1),
])
def test_an_edited_module_is_refused_and_rebuilt(cdir, monkeypatch, edit):
    monkeypatch.delenv("SYMGRAD_TAMPERED", raising=False)
    f = sg.compile(_quad())
    want = (f.value([0.0, 0.0]), f.grad([0.0, 0.0]).tolist())
    assert want == (13.0, [-2.0, 12.0])
    _forget(f)
    tampered = edit(f.path.read_text())
    assert tampered != f.source
    f.path.write_text(tampered)
    with pytest.warns(cache.CacheWarning, match=r"refused the cached module .*content hash"):
        f2 = sg.compile(_quad())
    assert "SYMGRAD_TAMPERED" not in os.environ
    assert (f2.value([0.0, 0.0]), f2.grad([0.0, 0.0]).tolist()) == want
    assert f2.path.read_text() == f.source


def test_a_stale_pyc_is_never_executed(cdir, monkeypatch):
    f = sg.compile(_quad())
    _forget(f)
    # a .pyc that Python's own import would prefer (same source stamp) running other code
    import importlib._bootstrap_external as be
    import marshal
    code = compile("import os\nos.environ['SYMGRAD_TAMPERED'] = '1'\n", str(f.path), "exec")
    st = f.path.stat()
    pyc = be._code_to_timestamp_pyc(code, st.st_mtime, st.st_size)
    (cdir / "__pycache__" / f"{f.path.stem}.{sys.implementation.cache_tag}.pyc").write_bytes(pyc)
    assert marshal  # (imported for the pyc helper)
    monkeypatch.delenv("SYMGRAD_TAMPERED", raising=False)
    assert sg.compile(_quad()).value([0.0, 0.0]) == 13.0
    assert "SYMGRAD_TAMPERED" not in os.environ


def test_a_shared_cache_directory_is_refused(cdir, monkeypatch):
    monkeypatch.delenv("SYMGRAD_TAMPERED", raising=False)
    f = sg.compile(_quad())
    _forget(f)
    # another user could have planted this: the directory is writable by everyone
    f.path.write_text("import os\nos.environ['SYMGRAD_TAMPERED'] = '1'\n")
    os.chmod(cdir, 0o777)
    monkeypatch.setattr(cache, "_USABLE", {})
    with pytest.warns(cache.CacheWarning, match=rf"cannot use the cache directory {cdir} "
                      r"\(.*writable by other users"):
        g = sg.compile(_quad())
    assert "SYMGRAD_TAMPERED" not in os.environ
    assert g.path.parent != cdir
    assert stat.S_IMODE(g.path.parent.stat().st_mode) == 0o700
    assert g.value([0.0, 0.0]) == 13.0


def _foreign(path) -> None:
    """Make ``path`` another user's file: chown when we can, else writable by everyone."""
    if os.getuid() == 0:
        os.chown(path, 65534, 65534, follow_symlinks=False)
    else:
        os.chmod(path, 0o666)


def test_an_entry_of_another_user_is_refused(cdir):
    f = sg.compile(_quad())
    _forget(f)
    _foreign(f.path)
    with pytest.warns(cache.CacheWarning, match=r"refused the cached module .*(owned by another"
                      r" user|writable by other users)"):
        g = sg.compile(_quad())
    assert g.value([0.0, 0.0]) == 13.0
    st = g.path.stat()
    assert st.st_uid == os.getuid() and stat.S_IMODE(st.st_mode) == 0o600


class _Marker:
    """Unpickling this creates the file ``path`` (a stand-in for arbitrary code)."""

    def __init__(self, path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _index(f, name: str = "value_and_grad"):
    found = sorted((f.path.parent / "__pycache__").glob(f"{f.path.stem}.{name}-*.nbi"))
    assert found, "Numba saved no index"
    return found[0]


def test_a_planted_numba_pickle_is_not_loaded(cdir, tmp_path):
    import numba
    marker = tmp_path / "ran"
    f = sg.compile(_quad())
    f.value_and_grad([0.0, 0.0])
    _forget(f)
    nbi = _index(f)
    nbi.write_bytes(pickle.dumps(numba.__version__) + pickle.dumps(_Marker(marker)))
    _foreign(nbi)
    with pytest.warns(cache.CacheWarning, match=rf"{nbi.name} \(is (owned by another user|"
                      "writable by other users)"):
        g = sg.compile(_quad())
    assert g.value_and_grad([0.0, 0.0])[1].tolist() == [-2.0, 12.0]
    assert not marker.exists()


# --------------------------------------------------------------------- item 10: corruption


def test_a_truncated_module_is_rebuilt(cdir):
    f = sg.compile(_quad())
    _forget(f)
    f.path.write_bytes(f.path.read_bytes()[: len(f.source) // 2])
    with pytest.warns(cache.CacheWarning, match="content hash .edited or truncated"):
        g = sg.compile(_quad())
    assert g.value([0.0, 0.0]) == 13.0 and g.path.read_text() == f.source


# a truncated index is a further bad .nbi: slow; "garbage index" keeps the index quick
@pytest.mark.parametrize("damage", ["garbage index",
                                    pytest.param("truncated index", marks=pytest.mark.slow),
                                    pytest.param("truncated data", marks=pytest.mark.slow)])
def test_corrupted_numba_files_are_rebuilt(cdir, damage):
    f = sg.compile(_quad())
    f.value([0.0, 0.0])
    f.hessian([0.0, 0.0])
    _forget(f)
    nbi = _index(f, "hessian")
    if damage == "garbage index":
        nbi.write_bytes(b"\x80\x05garbage" * 7)
    elif damage == "truncated index":
        nbi.write_bytes(nbi.read_bytes()[:30])
    else:
        nbc = sorted(nbi.parent.glob(nbi.name[:-len(".nbi")] + ".*.nbc"))[0]
        nbc.write_bytes(nbc.read_bytes()[:100])
    with pytest.warns(cache.CacheWarning, match=r"deleted Numba cache files .*corrupted"):
        g = sg.compile(_quad())
    assert g.hessian([0.0, 0.0]).tolist() == [[2.0, 0.0], [0.0, 6.0]]
    _forget(g)
    # Numba wrote a good index again: the next process loads it without complaint
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error", cache.CacheWarning)
        assert sg.compile(_quad()).hessian([0.0, 0.0])[1, 1] == 6.0


@pytest.mark.slow  # -m slow (4 s of compile, cold)
def test_numba_data_damaged_after_the_check_is_a_cache_miss(cdir):
    """A concurrent writer killed mid-write can truncate a data file after this process checked
    the cache: the call then recompiles with a warning instead of raising UnpicklingError."""
    f = sg.compile(_quad())
    f.hessian([0.0, 0.0])
    _forget(f)
    g = sg.compile(_quad())  # checked now; the damage comes after
    nbi = _index(g, "hessian")
    for nbc in nbi.parent.glob(nbi.name[:-len(".nbi")] + ".*.nbc"):
        nbc.write_bytes(nbc.read_bytes()[:100])
    with pytest.warns(cache.CacheWarning, match="did not load .*compiled it again"):
        assert g.hessian([0.0, 0.0]).tolist() == [[2.0, 0.0], [0.0, 6.0]]


# ---------------------------------------------------------------- item 11: unusable directory


def test_a_cache_path_that_cannot_be_a_directory_falls_back(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("SYMGRAD_CACHE_DIR", str(blocker / "cache"))
    monkeypatch.setattr(cache, "_USABLE", {})
    with pytest.warns(cache.CacheWarning, match=rf"cannot use the cache directory "
                      rf"{blocker / 'cache'} .*Set SYMGRAD_CACHE_DIR"):
        f = sg.compile(_quad(QUAD_B))
    assert f.value([-1.0, 1.0]) == 0.0
    assert not str(f.path).startswith(str(blocker))


def test_a_read_only_cache_falls_back_with_the_directory_named(cdir, monkeypatch):
    real = cache.tempfile.mkstemp

    def read_only(*a, dir=None, **k):
        if str(dir) == str(cdir):
            raise OSError(errno.EROFS, "Read-only file system", os.path.join(dir, ".sg_x.tmp"))
        return real(*a, dir=dir, **k)

    monkeypatch.setattr(cache.tempfile, "mkstemp", read_only)
    with pytest.warns(cache.CacheWarning, match=rf"cannot use the cache directory {cdir} "
                      r"\(Read-only file system\).*SYMGRAD_CACHE_DIR"):
        f = sg.compile(_quad(QUAD_B))
    assert f.value([-1.0, 1.0]) == 0.0 and f.path.parent != cdir


@pytest.mark.skipif(os.getuid() == 0, reason="root writes into read-only directories")
def test_a_permission_denied_cache_falls_back(cdir):
    cdir.mkdir(mode=0o500)
    with pytest.warns(cache.CacheWarning, match=rf"cannot use the cache directory {cdir}"):
        f = sg.compile(_quad(QUAD_B))
    assert f.value([-1.0, 1.0]) == 0.0


def test_a_failed_write_leaves_nothing_behind(tmp_path, monkeypatch):
    target = tmp_path / "m.py"

    def fail(*a):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cache.os, "replace", fail)
    with pytest.raises(OSError, match="No space"):
        cache.write_atomic(target, "x = 1\n")
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------ concurrency

WORKER = textwrap.dedent(f"""
    import json, os, signal, sys
    import symgrad as sg, symgrad.build.cache as cache
    which, how = sys.argv[1], sys.argv[2]
    if how == "die-before-rename":   # killed between writing the temporary file and the rename
        cache.os.replace = lambda *a: os.kill(os.getpid(), signal.SIGKILL)
    if how == "die-in-numba-write":  # a crash that leaves a half-written Numba data file
        from numba.core import caching
        def half(self, name, data):
            with open(self._data_path(name), "wb") as fh:
                fh.write(self._dump(data)[:50])
            os.kill(os.getpid(), signal.SIGKILL)
        caching.IndexDataCacheFile._save_data = half
    x1, x2 = sg.params("x1 x2")
    f = sg.compile({QUAD_A} if which == "A" else {QUAD_B})
    at = [0.0, 0.0]
    v, g = f.value_and_grad(at)
    print(json.dumps([which, f.value(at), v, g.tolist(), f.path.name]))
""")
EXPECT = {"A": (13.0, [-2.0, 12.0]), "B": (6.0, [2.0, -10.0])}


def _run_all(jobs, env, python, tmp_path) -> list:
    procs = [subprocess.Popen([python, "-c", WORKER, which, how], env=env, cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for which, how in jobs]
    out = []
    for (_which, how), p in zip(jobs, procs, strict=True):
        stdout, stderr = p.communicate(timeout=240)
        if how.startswith("die"):
            assert p.returncode == -signal.SIGKILL, stderr[-2000:]
            continue
        assert p.returncode == 0, stderr[-3000:]
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


def _check(results) -> None:
    for which, value, v, g, _ in results:
        val, grad = EXPECT[which]
        assert value == v == val, which
        assert g == grad, which


# slow (five processes at once, about 10 s of CPU); quick, each mechanism in one process:
# test_a_failed_write_leaves_nothing_behind, test_an_edited_module_is_refused_and_rebuilt,
# test_a_truncated_module_is_rebuilt, test_corrupted_numba_files_are_rebuilt and
# test_cache_robust.py::test_threads_compiling_one_loss_cold_then_warm
@pytest.mark.slow
def test_concurrent_processes_killed_writers_tampering_and_truncation(tmp_path, python,
                                                                      subprocess_env):
    d = tmp_path / "shared"
    env = subprocess_env(SYMGRAD_CACHE_DIR=str(d))
    first = _run_all([("A", "die-before-rename"), ("B", "die-in-numba-write"), ("A", "ok"),
                      ("A", "ok"), ("B", "ok")], env, python, tmp_path)
    _check(first)
    names = {r[0]: r[4] for r in first}
    assert len(set(names.values())) == 2
    # what the killed writer left is an invisible temporary file, never a half module; the
    # helpers the modules share (build/shared.py) are one more entry, written once
    py = sorted(p.name for p in d.glob("*.py"))
    shared = [n for n in py if n.startswith("sg_shared_")]
    assert len(shared) == 1 and sorted(set(py) - set(shared)) == sorted(names.values())
    # tamper one entry, truncate the other, damage Numba data files; then both again
    a, b = d / names["A"], d / names["B"]
    a.write_text(a.read_text().replace("    g[0] = ", "    g[0] = 999.0 + 0*", 1))
    b.write_bytes(b.read_bytes()[:500])
    for nbc in sorted((d / "__pycache__").glob(names["A"][:-3] + ".*.nbc"))[:2]:
        nbc.write_bytes(b"\x80\x05\x95")
    _check(_run_all([("A", "ok"), ("B", "ok")], env, python, tmp_path))
