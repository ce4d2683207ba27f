"""The BLAS thread policy: the pools (NumPy's, and SciPy's that the array kernels use) get the
cores other processes leave free, the environment or set_blas_threads overrides it, and the
loops call no NumPy BLAS between kernel calls."""

from __future__ import annotations

import ast
import inspect

import numba
import pytest

import symgrad as sg
from symgrad.runtime import blas
from symgrad.train import lbfgs, newton, python_loop, second_order


@pytest.fixture
def policy(monkeypatch):
    """The policy with a fake machine: 2 cores, set() recorded instead of applied."""
    p = blas._Policy()
    p.cores = 2
    p.last = None  # no look yet (a new policy has the one it took when made)
    given: list[int] = []
    monkeypatch.setattr(p, "set", given.append)
    monkeypatch.setattr(blas, "_P", p)
    for v in blas._ENV:
        monkeypatch.delenv(v, raising=False)
    return p, given


def _machine(p, monkeypatch, samples):
    it = iter(samples)
    monkeypatch.setattr(p, "sample", lambda: next(it))


def test_threads_follow_the_cores_other_processes_leave(policy, monkeypatch):
    p, given = policy
    # (wall s, own CPU s, machine busy CPU s): first look, then the others idle, then busy
    _machine(p, monkeypatch, [(0.0, 0.0, 0.0), (1.0, 0.9, 1.0), (2.0, 1.8, 2.9),
                              (3.0, 2.7, 3.5)])
    for _ in range(4):
        p.due = 0.0
        blas.refresh()
    # first look: no history, one thread; then 0.1 core busy elsewhere: both cores;
    # then 1.0 core elsewhere: one; then the others at 0.5 - 0.9 = -0.4: both again
    assert given == [1, 2, 1, 2]


@pytest.mark.parametrize("busy, want", [(2.0, 2), (3.9, 1)])
def test_the_first_decision_measures_the_time_since_import(policy, monkeypatch, busy, want):
    """The first parallel call of a process gets the free cores at once: its first look is
    taken when symgrad is imported (here 2 s earlier, spent compiling on 1.9 s of CPU), where it
    used to give one thread until a second look half a second later."""
    p, given = policy
    assert blas._Policy().last is not None  # a look at import
    p.last = (0.0, 0.0, 0.0)
    _machine(p, monkeypatch, [(2.0, 1.9, busy)])  # others: 0.05 or 1.0 core
    blas.refresh()
    assert given == [want]


def test_refresh_is_rate_limited(policy, monkeypatch):
    p, given = policy
    _machine(p, monkeypatch, [(0.0, 0.0, 0.0)])
    blas.refresh()
    blas.refresh()  # within half a second: no new look (the fake has no second sample)
    assert given == [1]


def test_environment_and_set_blas_threads_override(policy, monkeypatch):
    p, given = policy
    _machine(p, monkeypatch, [])
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")
    blas.refresh()
    assert given == []  # the environment decides
    sg.set_blas_threads(1)
    assert given == [1]
    blas.refresh()
    assert given == [1]
    with pytest.raises(ValueError, match="positive int"):
        sg.set_blas_threads(0)
    sg.set_blas_threads(None)
    assert p.fixed is None


def test_set_blas_threads_reaches_every_pool():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    pools = [c for c in blas._P.controllers()]
    if not pools:
        pytest.skip("no BLAS pool found by threadpoolctl")
    try:
        sg.set_blas_threads(1)
        info = {i["filepath"]: i["num_threads"] for i in threadpoolctl.threadpool_info()}
        assert all(info[c.filepath] == 1 for c in pools)
    finally:
        sg.set_blas_threads(None)


@pytest.mark.parametrize("module", [python_loop, lbfgs, newton, second_order])
def test_training_loops_call_no_numpy_blas(module):
    """No ``@``, ``np.dot``, ``np.linalg`` or ``vdot`` in the Python loops (first-order, L-BFGS,
    Newton): NumPy's BLAS runs on NumPy's own thread pool, whose spinning threads would take the
    cores from the kernels' pool between two steps."""
    source = inspect.getsource(module)
    tree = ast.parse(source[source.index('"""', 3) + 3:])  # the docstring's examples aside
    matmul = [n.lineno for n in ast.walk(tree)
              if isinstance(n, ast.BinOp) and isinstance(n.op, ast.MatMult)]
    calls = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Attribute)
             and isinstance(n.value, ast.Name) and n.value.id in ("np", "numpy")
             and n.attr in ("dot", "vdot", "inner", "linalg", "matmul", "tensordot")]
    assert not matmul and not calls, (matmul, calls)


def test_a_numba_thread_count_set_before_the_first_threaded_call_is_kept(monkeypatch):
    """The user's numba.set_num_threads made before symgrad's first threaded call stands (the
    policy used to overwrite it then, and only respect a count changed after its first)."""
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("one Numba thread: no other count to choose")
    p = blas._Policy()
    monkeypatch.setattr(p, "set", lambda n: None)  # leave the real BLAS pools alone
    monkeypatch.setattr(p, "decide", lambda: numba.config.NUMBA_NUM_THREADS)
    monkeypatch.setattr(blas, "_P", p)
    monkeypatch.delenv("NUMBA_NUM_THREADS", raising=False)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)  # the user's, before any threaded kernel
        blas.use_threads()
        assert p.numba and numba.get_num_threads() == 1
        sg.set_blas_threads(2)  # the documented way to fix it still does
        assert numba.get_num_threads() == 2
    finally:
        sg.set_blas_threads(None)
        numba.set_num_threads(before)


def test_scalar_and_residual_threaded_calls_follow_the_policy(monkeypatch):
    """Every kind's threaded functions run under the one policy: a scalar or residual kernel's
    call from PARALLEL_THRESHOLD samples hands Numba's threads to it, a smaller call does not
    (the choice only: nothing is compiled here)."""
    import numpy as np

    from symgrad.runtime.scalar import PARALLEL_THRESHOLD

    p = blas._Policy()
    monkeypatch.setattr(p, "set", lambda n: None)
    monkeypatch.setattr(blas, "_P", p)
    a, b = sg.params("a b")
    t, y = sg.data("t y")
    f = sg.compile(sg.mean((a * t + b - y) ** 2), [a, b])
    r = sg.compile_residuals(a * t + b - y, [a, b])
    small = (np.zeros(10), np.zeros(10), None)
    assert f._impl(small) is f.jit and r._impl(10) is r._serial and not p.numba
    n = PARALLEL_THRESHOLD
    large = (np.zeros(n), np.zeros(n), None)
    assert f._impl(large) is f._jit_par and p.numba
    p.numba = False
    assert r._impl(n) is r._par and p.numba
