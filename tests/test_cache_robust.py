"""The compile cache under stress (issue 24): threads compiling one loss at once (item 14), a
Numba cache that cannot be saved (item 15), and the private fallback directory removed at
exit (item 25)."""

from __future__ import annotations

import errno
import subprocess
import sys
import threading
import warnings

import numpy as np
import pytest

import symgrad as sg
from symgrad.build import cache


def _loss(tag: str):
    """A loss of its own (its parameter names) so no other test has imported its module."""
    a, b = sg.params(f"a_{tag} b_{tag}")
    t, y = sg.data("t y")
    return sg.mean((a * t + b - y) ** 2)


def _compile_from_threads(loss, n: int = 8) -> list:
    """Compile ``loss`` and evaluate it from ``n`` threads started at once: each result or
    the exception raised."""
    gate = threading.Barrier(n)
    results: list = [None] * n
    data = dict(t=np.array([0.0, 1.0, 2.0]), y=np.array([1.0, 3.0, 5.0]))

    def work(k: int) -> None:
        gate.wait()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", cache.CacheWarning)
                f = sg.compile(loss)
                results[k] = f.value(np.array([2.0, 1.0]), **data)
        except BaseException as exc:  # reported below, with the thread that saw it
            results[k] = exc

    threads = [threading.Thread(target=work, args=(k,)) for k in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return results


def _assert_all_ok(results: list) -> None:
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, f"{len(errors)} of {len(results)} threads failed: {errors[0]!r}"
    assert results == [0.0] * len(results)


@pytest.mark.slow
def test_threads_compiling_one_loss_cold_then_warm(cdir):
    loss = _loss("threads")
    _assert_all_ok(_compile_from_threads(loss))  # cold: nothing on disk
    stem = sg.compile(loss).path.stem
    assert (cdir / f"{stem}.py").is_file()
    sys.modules.pop(stem)  # warm: as a new process that finds the module on disk
    _assert_all_ok(_compile_from_threads(loss))


@pytest.mark.parametrize("data", [True, False], ids=["with-data", "no-data"])
def test_a_failed_numba_cache_save_runs_uncached_with_a_warning(cdir, monkeypatch, data):
    from numba.core import caching

    def full(self, *args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(caching.IndexDataCacheFile, "save", full)
    a, b = sg.params("a_save b_save")
    if data:
        t = sg.data("t")
        f, kw = sg.compile(sg.mean((a * t - b) ** 2)), dict(t=np.array([1.0, 2.0]))
    else:
        f, kw = None, {}
    with pytest.warns(cache.CacheWarning, match=r"could not save Numba's compiled code for "
                      r"sg_\w+ \(No space left on device\); it runs uncached"):
        if f is None:
            f = sg.compile((a - 1) ** 2 + (b - 2) ** 2)
        v, g = f.value_and_grad(np.array([3.0, 4.0]), **kw)
    # residuals a*t - b at (3, 4): -1 and 2 (mean of squares 2.5); without data (2, 2)
    want = (2.5, [3.0, -1.0]) if data else (8.0, [4.0, 4.0])
    assert v == want[0] and g.tolist() == want[1]
    assert f.value_and_grad(np.array([3.0, 4.0]), **kw)[0] == want[0]  # no error later either


@pytest.mark.slow
def test_the_private_fallback_directory_is_removed_at_exit(tmp_path, python, subprocess_env):
    blocker = tmp_path / "file"
    blocker.write_text("")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    code = ("import warnings, symgrad as sg\n"
            "warnings.simplefilter('ignore')\n"
            "x = sg.params('x_exit')\n"
            "f = sg.compile((x - 1)**2)\n"
            "assert f.value([3.0]) == 4.0\n"
            "print(f.path)\n")
    env = subprocess_env(SYMGRAD_CACHE_DIR=str(blocker / "cache"), TMPDIR=str(tmp))
    run = subprocess.run([python, "-c", code], env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    used = run.stdout.strip()
    assert used.startswith(str(tmp / "symgrad-cache-")), used  # the fallback was used
    assert list(tmp.iterdir()) == []  # and removed when the process exited
