"""``parallel=None`` (the default) on array kernels: a call whose largest loop may reach
``AUTO_WORK`` elements runs the threaded cores, a smaller one the serial cores. The result does
not depend on the number of threads and equals the serial one to rounding."""

from __future__ import annotations

import types

import numba
import numpy as np
import pytest

import symgrad as sg
from symgrad.backend.numba.emit_par import PAR_WORK
from symgrad.ir.array_problem import array_problem
from symgrad.runtime.array import AUTO_WORK, work, work_sizes

pytestmark = pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2,
                                reason="Numba has a single thread")

H = W = 200  # 39,800 elements in the grid's largest loop: above AUTO_WORK
M, NN, K = 300, 200, 16


def _grid_loss():
    u = sg.params("u", shape=(H, W))
    return sg.sum((u[1:, :] - u[:-1, :]) ** 2) + sg.sum((u[:, 1:] - u[:, :-1]) ** 2)


def _mf_loss():
    U, V = sg.params("U", shape=(M, K)), sg.params("V", shape=(NN, K))
    i, j = sg.data("i j", dtype=int)
    r = sg.data("r")
    return sg.mean((sg.sum(U[i] * V[j], axis=0) - r) ** 2)


class _Spy:
    """Counts the calls of a kernel's threaded cores."""

    def __init__(self, f) -> None:
        self.calls: list[str] = []
        par = f._jit_par

        def wrap(name):
            def call(*a):
                self.calls.append(name)
                return getattr(par, name)(*a)
            return call

        f._jit_par = types.SimpleNamespace(**{n: wrap(n) for n in vars(par)})


@pytest.fixture(scope="module")
def grids():
    loss = _grid_loss()
    return {p: sg.compile(loss, parallel=p) for p in (None, False)}


@pytest.fixture(scope="module")
def mfs():
    loss = _mf_loss()
    rng = np.random.default_rng(3)
    e = 6000  # 96,000 elements per loop over the entries: above AUTO_WORK and 8 x (M + NN) x K
    data = {"i": rng.integers(0, M, e), "j": rng.integers(0, NN, e),
            "r": rng.standard_normal(e)}
    return {p: sg.compile(loss, parallel=p) for p in (None, False)}, data


@pytest.fixture
def threads():
    """Run with ``sg.set_blas_threads(n)`` (Numba's threads follow it); the policy after."""
    yield sg.set_blas_threads
    sg.set_blas_threads(None)


def _calls(f, x, **data):
    """(value, gradient, Hessian-vector product) of f at x."""
    v, g = f.value_and_grad(x, **data)
    hv = f.hvp(x, np.linspace(-1.0, 1.0, x.size), **data)
    return f.value(x, **data), v, g, hv


def _same(a, b) -> None:
    for p, q in zip(a, b, strict=True):
        assert np.array_equal(p, q)


def _close(a, b) -> None:
    for p, q in zip(a, b, strict=True):
        np.testing.assert_allclose(p, q, rtol=1e-12, atol=1e-12 * np.max(np.abs(q)))


def test_work_bounds_the_cores_loops(grids, mfs):
    assert AUTO_WORK >= PAR_WORK  # below PAR_WORK the threaded cores would run serially
    assert grids[None]._work == (0, H * W - W, 0, 0, 0)  # the shifted differences
    assert mfs[0][None]._work == (K, 1, 0, 0, (M + NN) * K)  # U[i] rows; U and V gathered


def test_mlp_products_outweigh_the_loops():
    """Matrix products run on BLAS: they are not loops, and when they outweigh the loops (784 x
    128 + 128 x 10 multiply-adds against 128 elements per sample) the default stays serial:
    the kernel makes no per-call test at all."""
    W1, W2 = sg.params("W1", shape=(128, 784)), sg.params("W2", shape=(10, 128))
    X, Y = sg.data("X", shape=(784,)), sg.data("Y", shape=(10,))
    loss = sg.mean(-sg.sum(Y * sg.log_softmax(W2 @ sg.relu(W1 @ X)), axis=0))
    sizes = work_sizes(array_problem(loss, [W1, W2]))
    assert sizes == (128, 1, 784 * 128 + 128 * 10, 0, 0)
    assert work(sizes, (None, np.empty((4096, 784))), 1) == 0
    assert sg.compile(loss, [W1, W2])._work is None


def test_default_routes_large_calls_to_the_threaded_cores(grids):
    """The choice alone (no compile): a call of the 200 x 200 grid goes to the threaded cores."""
    f = grids[None]
    calls: list[str] = []
    saved = f._jit_par
    f._jit_par = types.SimpleNamespace(value=lambda *a: calls.append("value") or 1.0,
                                       value_and_grad=lambda *a: calls.append("vg") or 1.0)
    try:
        x = np.zeros(f.n_params)
        assert f.value(x) == 1.0 and f.value_and_grad(x)[0] == 1.0
    finally:
        f._jit_par = saved
    assert calls == ["value", "vg"]


def test_parallel_true_runs_small_calls_on_the_serial_cores(mfs):
    """``parallel=True``: a call whose loops cannot reach PAR_WORK runs the serial cores from
    Python (the threaded ones would run a copy of them that LLVM optimises again: 1 ulp off on
    an AVX2 host), so it gives parallel=False's bits; a larger call runs the threaded cores."""
    fs, data = mfs
    f = sg.compile(_mf_loss(), parallel=True)
    calls: list[str] = []
    f._jit_par = types.SimpleNamespace(value=lambda *a: calls.append("value") or 1.0,
                                       value_and_grad=lambda *a: calls.append("vg") or 1.0)
    x = 0.3 * np.random.default_rng(5).standard_normal(f.n_params)
    small = {k: v[:100] for k, v in data.items()}  # 1,600 elements per loop; U 4,800
    _same(_calls(f, x, **small)[:3], _calls(fs[False], x, **small)[:3])
    assert calls == []
    assert f.value(x, **data) == 1.0 and calls == ["value"]  # 96,000 elements
    # no sample axis: a problem below PAR_WORK never calls the threaded cores, nor compiles them
    u = sg.params("u", shape=(20, 20))
    g = sg.compile(sg.sum((u[1:, :] - u[:-1, :]) ** 2), parallel=True)
    assert g.jit is g._jit_serial and g._work is None


@pytest.mark.slow  # cold: the threaded value, gradient and HVP cores compile (about 40 s)
@pytest.mark.parametrize("case", ["grid", "mf"])
def test_default_runs_threads_above_the_threshold(grids, mfs, threads, case):
    """Above AUTO_WORK the default runs the threaded cores: the same bits with 1 and 2 threads,
    the serial results to rounding."""
    fs, data = (grids, {}) if case == "grid" else mfs
    f = fs[None]
    x = 0.3 * np.random.default_rng(4).standard_normal(f.n_params)
    spy = _Spy(f)
    threads(1)
    one = _calls(f, x, **data)
    threads(2)
    assert numba.get_num_threads() == 2
    two = _calls(f, x, **data)
    assert spy.calls.count("value_and_grad") == 2 and spy.calls.count("hvp") == 2
    _same(one, two)
    _close(one, _calls(fs[False], x, **data))


@pytest.mark.parametrize("rows", [AUTO_WORK // K - 1, 3000])
def test_default_small_calls_run_serial(mfs, threads, rows):
    """A mini-batch of the large data is the serial core (the serial bits, the threaded cores
    not called): below AUTO_WORK elements (2047 x 16), or with fewer than 8 loop elements per
    element of the gathered U and V (3000 x 16 < 8 x 500 x 16)."""
    fs, data = mfs
    f = fs[None]
    x = 0.3 * np.random.default_rng(5).standard_normal(f.n_params)
    spy = _Spy(f)
    threads(2)
    assert rows * K < AUTO_WORK or rows < 8 * (M + NN)
    batch = slice(0, rows)
    _same(_calls(f, x, batch=batch, **data), _calls(fs[False], x, batch=batch, **data))
    assert spy.calls == []


def test_false_never_runs_threads(mfs):
    fs, data = mfs
    spy = _Spy(fs[False])
    fs[False].value_and_grad(np.zeros(fs[False].n_params), **data)
    assert spy.calls == [] and fs[False].parallel is False and fs[None].parallel is None
