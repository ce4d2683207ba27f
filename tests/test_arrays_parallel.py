"""Array kernels with threads (``sg.compile(loss, parallel=True)``): the threaded cores give the
same bits with 1 and 2 Numba threads, agree with the serial cores and NumPy, fall back to the
serial core on small problems, and take their thread count from the BLAS policy."""

from __future__ import annotations

import numba
import numpy as np
import pytest

import symgrad as sg
from symgrad.backend.numba.emit_par import PAR_WORK
from symgrad.runtime import blas

pytestmark = [pytest.mark.usefixtures("array_code"),  # the array code's threads, not fused
              pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2,
                                 reason="Numba has a single thread")]


def _threads(fn, *args, outs=()):
    """``fn(*args)`` with 1 and with 2 Numba threads: [(result, copies of outs)] per count."""
    res = []
    before = numba.get_num_threads()
    try:
        for nt in (1, 2):
            numba.set_num_threads(nt)
            for o in outs:
                o[:] = np.nan
            res.append((fn(*args), [o.copy() for o in outs]))
    finally:
        numba.set_num_threads(before)
    return res


def _same_bits(res) -> None:
    (v1, o1), (v2, o2) = res
    assert (v1 is None and v2 is None) or np.array_equal(v1, v2, equal_nan=True)
    for a, b in zip(o1, o2, strict=True):
        assert np.array_equal(a, b)


H = W = 200  # 40,000 elements: above PAR_WORK


@pytest.fixture(scope="module")
def grid():
    assert H * W > PAR_WORK
    u = sg.params("u", shape=(H, W))
    return sg.compile(sg.sum((u[1:, :] - u[:-1, :]) ** 2) + sg.sum((u[:, 1:] - u[:, :-1]) ** 2),
                      parallel=True)


def test_grid_same_bits_for_one_and_two_threads(grid):
    x = np.random.default_rng(0).standard_normal(H * W)
    g = np.empty_like(x)
    assert grid.jit.value_and_grad is grid.module._value_and_grad_par
    res = _threads(grid.jit.value_and_grad, x, g, *grid.data_args({}), outs=(g,))
    _same_bits(res)
    U = x.reshape(H, W)
    G = np.zeros((H, W))
    for d, lo, hi in ((U[1:] - U[:-1], np.s_[1:], np.s_[:-1]),
                      (U[:, 1:] - U[:, :-1], np.s_[:, 1:], np.s_[:, :-1])):
        G[lo] += 2 * d
        G[hi] -= 2 * d
    ref = ((U[1:] - U[:-1]) ** 2).sum() + ((U[:, 1:] - U[:, :-1]) ** 2).sum()
    assert abs(res[0][0] - ref) <= 1e-12 * ref
    np.testing.assert_allclose(res[0][1][0], G.ravel(), rtol=1e-12, atol=1e-12)
    # the public API runs the same core
    v, g2 = grid.value_and_grad(x)
    assert v == res[0][0] and np.array_equal(g2, res[0][1][0])


def test_small_problem_runs_the_serial_core(grid):
    """Below PAR_WORK the threaded core calls the serial one. Numba links a copy of the serial
    function into the threaded one, and LLVM optimises that copy again under fastmath
    reassociation, so the two can differ in the last bit: the value here by 1 ulp on an AVX2
    EPYC host. They agree to rounding; a kernel calls the serial core itself for such calls
    (test_array_autothreads), so its results are parallel=False's bits."""
    src = grid.source[grid.source.index("def _value_and_grad_par("):]
    head = src[:src.index("numba.prange")]
    assert f"< {PAR_WORK}:" in head and "return _value_and_grad(x, g, dims)" in head
    x = np.random.default_rng(1).standard_normal(20 * 20)
    dims = np.array([20, 20], dtype=np.int64)  # the same module at another size
    g1, g2 = np.empty_like(x), np.empty_like(x)
    v1 = grid.module._value_and_grad_par(x, g1, dims)
    v2 = grid.module._value_and_grad(x, g2, dims)
    assert abs(v1 - v2) <= 4 * np.spacing(v2)
    np.testing.assert_allclose(g1, g2, rtol=1e-15, atol=1e-15 * np.abs(g2).max())


M, NN, K, E = 300, 200, 4, 20_000


@pytest.fixture(scope="module")
def factorisation():
    U, V = sg.params("U", shape=(M, K)), sg.params("V", shape=(NN, K))
    i, j = sg.data("i j", dtype=int)
    r = sg.data("r")
    f = sg.compile(sg.mean((sg.sum(U[i] * V[j], axis=0) - r) ** 2)
                   + 0.01 * sg.sum(U ** 2), parallel=True)
    rng = np.random.default_rng(2)
    data = {"i": rng.integers(0, M, E), "j": rng.integers(0, NN, E),
            "r": rng.standard_normal(E)}
    return f, data, 0.3 * rng.standard_normal(f.n_params)


@pytest.mark.slow
def test_scatters_same_bits_for_one_and_two_threads(factorisation):
    """Gathers' adjoints (scatters) add fixed chunks of the samples into buffers of their own,
    combined in chunk order: the same bits for 1 and 2 threads, the serial sums to rounding."""
    f, data, x = factorisation
    args = f.data_args(data)
    g = np.empty_like(x)
    res = _threads(f.module._value_and_grad_par, x, g, *args, outs=(g,))
    _same_bits(res)
    gs = np.empty_like(x)
    vs = f.module._value_and_grad(x, gs, *args)
    np.testing.assert_allclose(res[0][1][0], gs, rtol=1e-12, atol=1e-15)
    assert abs(res[0][0] - vs) <= 1e-13 * abs(vs)
    Uv, Vv = x[:M * K].reshape(M, K), x[M * K:].reshape(NN, K)
    e = (Uv[data["i"]] * Vv[data["j"]]).sum(1) - data["r"]
    gU, gV = 0.02 * Uv, np.zeros_like(Vv)
    np.add.at(gU, data["i"], 2 * e[:, None] * Vv[data["j"]] / E)
    np.add.at(gV, data["j"], 2 * e[:, None] * Uv[data["i"]] / E)
    np.testing.assert_allclose(gs, np.concatenate([gU.ravel(), gV.ravel()]), rtol=1e-10,
                               atol=1e-14)
    v = np.random.default_rng(3).standard_normal(x.size)
    out = np.empty_like(x)
    _same_bits(_threads(f.module._hvp_par, x, v, out, *args, outs=(out,)))
    _same_bits(_threads(f.module._value_par, x, *args))
    bad = data["i"].copy()
    bad[E // 2] = M  # the threads count the rows out of range; the error names the column
    with pytest.raises(ValueError, match="index column i: a row is out of range for U"):
        f.module._value_and_grad_par(x, g, f.dims, bad, data["j"], data["r"])


NS, DIN, DOUT = 12_000, 6, 4  # NS * DOUT = 48,000 elements: above PAR_WORK


@pytest.fixture(scope="module", params=["float64", "float32"])
def softmax_model(request):
    """Per-sample logsumexp, a bias (its gradient sums the samples keeping an axis), BLAS."""
    W = sg.params("W", shape=(DOUT, DIN))
    b = sg.params("b", shape=(DOUT,))
    X, Y = sg.data("X", shape=(DIN,)), sg.data("Y", shape=(DOUT,))
    z = W @ X + b
    f = sg.compile(sg.mean(sg.logsumexp(z) - sg.sum(Y * z)) + 0.1 * sg.sum(b ** 2),
                   parallel=True, dtype=request.param)
    rng = np.random.default_rng(4)
    data = {"X": rng.standard_normal((NS, DIN)),
            "Y": np.eye(DOUT)[rng.integers(0, DOUT, NS)]}
    return f, data, rng.standard_normal(f.n_params).astype(request.param)


@pytest.mark.slow
def test_sums_keeping_an_axis_same_bits(softmax_model):
    f, data, x = softmax_model
    args = f.data_args(data)
    g = np.empty_like(x)
    res = _threads(f.jit.value_and_grad, x, g, *args, outs=(g,))
    _same_bits(res)
    gs = np.empty_like(x)
    vs = f.module._value_and_grad(x, gs, *args)
    tol = 1e-12 if x.dtype == np.float64 else 1e-5
    assert abs(res[0][0] - vs) <= tol * abs(vs)
    np.testing.assert_allclose(res[0][1][0], gs, rtol=tol, atol=tol)
    v = np.ones_like(x)
    out = np.empty_like(x)
    _same_bits(_threads(f.jit.hvp, x, v, out, *args, outs=(out,)))


def test_policy_sets_numba_threads(monkeypatch):
    """Once a parallel kernel exists, set_blas_threads fixes Numba's threads too, and the
    automatic policy leaves a count the user chose with numba.set_num_threads alone."""
    p = blas._Policy()
    monkeypatch.setattr(p, "set", lambda n: None)  # leave the real BLAS pools alone
    monkeypatch.setattr(blas, "_P", p)
    monkeypatch.delenv("NUMBA_NUM_THREADS", raising=False)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(2)
        blas.use_threads()
        sg.set_blas_threads(1)
        assert numba.get_num_threads() == 1
        sg.set_blas_threads(None)
        monkeypatch.setattr(p, "decide", lambda: 2)
        p.due = 0.0
        blas.refresh()
        assert numba.get_num_threads() == 2  # the policy's count
        numba.set_num_threads(1)  # the user's choice
        p.due = 0.0
        blas.refresh()
        assert numba.get_num_threads() == 1
    finally:
        numba.set_num_threads(before)


def test_parallel_is_refused_for_models_only():
    W = sg.params("W", shape=(2, 3))
    X = sg.data("X", shape=(3,))
    with pytest.raises(ValueError, match="parallel="):
        sg.compile(W @ X, parallel=True)
