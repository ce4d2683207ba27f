"""Residual modules: serial entries, their ``*_parallel`` twins and the kernel's threaded calls.

Every entry of a residual module (``residuals``, ``rows``, ``jvp``, ``vjp``, ``normal``) is a
serial driver over chunks of samples; with data columns a ``*_parallel`` driver runs the same
chunks under ``prange``, so both give the same bits. The kernel's threaded calls run the same
chunks' ``nogil`` functions on Python threads without compiling the ``prange`` twins: the same
bits again. ``ResidualKernel(parallel=None)`` threads from ``PARALLEL_THRESHOLD`` samples, True
always, False never; Dask workers run the chunk functions as a serial kernel does.
"""

from __future__ import annotations

import types

import numba
import numpy as np
import pytest

import symgrad as sg
from symgrad.backend.numba.skeleton import CHUNK
from symgrad.distributed.worker import ModuleSpec, chunk_rows
from symgrad.runtime import scalar

ENTRIES = ("residuals", "rows", "jvp", "vjp", "normal")
N = 3 * CHUNK + 5  # three chunks, the last one longer


def _data(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.sort(rng.uniform(0.0, 2.0, n))
    return {"t": t, "y": 2.0 * np.exp(-1.5 * t) + 0.3 + 0.01 * rng.standard_normal(n)}


@pytest.fixture(scope="module")
def two():
    """Two residuals per sample (m = 2), P = 3."""
    a, b, c = sg.params("a b c")
    t, y = sg.data("t y")
    return sg.compile_residuals([a * sg.exp(-b * t) + c - y, a * t - b * y + c * sg.sin(t)],
                                [a, b, c])


@pytest.fixture(scope="module")
def f32():
    a, b, c = sg.params("a b c")
    t, y = sg.data("t y")
    return sg.compile_residuals(a * sg.exp(-b * t) + c - y, [a, b, c], dtype="float32")


def _calls(mod, parallel: bool, x, v, u, js, rs, cols) -> list[np.ndarray]:
    """Every entry of ``mod`` (serial or parallel) on the same inputs, into new outputs."""
    def f(name):
        return getattr(mod, name + ("_parallel" if parallel else ""))

    n, m, P = cols[0].shape[0], int(mod.M_PER_SAMPLE), x.shape[0]
    lo, hi = 7, n - 3
    J, r = np.empty(((hi - lo) * m, P)), np.empty((hi - lo) * m)
    f("rows")(x, lo, hi, J, r, *cols)
    A, bv = np.empty((P, P)), np.empty(P)
    rtr = f("normal")(x, A, bv, None, None, *cols)
    As, bs = np.empty((P, P)), np.empty(P)
    rtrs = f("normal")(x, As, bs, js, rs, *cols)
    return [f("residuals")(x, np.empty(n * m), *cols), J, r,
            f("jvp")(x, v, np.empty(n * m), *cols), f("vjp")(x, u, np.empty(P), *cols),
            A, bv, np.array(rtr), As, bs, np.array(rtrs)]


@pytest.mark.slow  # the kernels thread without the twins (quick: the threaded-calls test below)
def test_the_parallel_normal_pass_is_the_serial_one_bit_for_bit(two):
    # the fused normal equations with row scales: the same chunks summed in the same order
    # (the slow test below checks every entry, unscaled too, and a float32 module)
    rng = np.random.default_rng(2)
    cols = two.data_args(_data(N, seed=3))
    M, P = N * two.m, two.n_params
    x = np.array([1.7, 1.2, 0.2])
    js, rs = rng.uniform(0.5, 2.0, M), rng.uniform(0.5, 2.0, M)
    got = []
    for normal in (two.module.normal, two.module.normal_parallel):
        A, bv = np.empty((P, P)), np.empty(P)
        got.append((A, bv, normal(x, A, bv, js, rs, *cols)))
    assert np.isfinite(got[0][0]).all()
    for s, p in zip(*got, strict=True):
        np.testing.assert_array_equal(s, p)


@pytest.mark.slow
@pytest.mark.parametrize("which", ["two", "f32"])
def test_serial_and_parallel_entries_give_the_same_bits(which, request):
    rk = request.getfixturevalue(which)
    rng = np.random.default_rng(1)
    cols = rk.data_args(_data(N))
    M = N * rk.m
    x, v = np.array([1.7, 1.2, 0.2]), rng.standard_normal(3)
    u, js, rs = rng.standard_normal(M), rng.uniform(0.5, 2.0, M), rng.uniform(0.5, 2.0, M)
    serial = _calls(rk.module, False, x, v, u, js, rs, cols)
    par = _calls(rk.module, True, x, v, u, js, rs, cols)
    for s, p in zip(serial, par, strict=True):
        assert np.isfinite(s).all()
        np.testing.assert_array_equal(s, p)  # bit for bit: the same chunks, summed alike
    # and the kernel's results do not depend on its parallel option either
    data = _data(N)
    got = {}
    for p in (True, False):
        k = type(rk)(rk.problem, rk.source, rk.path, rk.module, rk.policy, parallel=p)
        A, g, rtr = k.normal(x, js, rs, **data)
        got[p] = [A, g, np.array(rtr), k.vjp(x, u, **data), k.jacobian(x, **data),
                  k.residuals(x, **data), k.jvp(x, v, **data)]
    for s, p in zip(got[False], got[True], strict=True):
        np.testing.assert_array_equal(s, p)

@pytest.fixture(scope="module")
def decay():
    """One residual per sample whose parallel functions no quick test compiles: the choice
    tests below record which functions a kernel picks and run the serial ones."""
    a, b = sg.params("a b")
    t, y = sg.data("t y")
    return sg.compile_residuals(a * sg.tanh(b * t) - y + 0.375, [a, b])


def _recorded(rk, parallel):
    """A kernel on ``rk``'s module with this ``parallel`` option, whose serial and parallel
    function sets log the set each call picks and then run the serial function (the bits are
    the same, :func:`test_the_parallel_normal_pass_is_the_serial_one_bit_for_bit`)."""
    k = type(rk)(rk.problem, rk.source, rk.path, rk.module, rk.policy, parallel=parallel)
    log: list[str] = []

    def logged(kind):
        def wrap(name):
            def call(*args):
                log.append(f"{kind} {name}")
                return getattr(k._serial_fns, name)(*args)
            return call
        return types.SimpleNamespace(**{e: wrap(e) for e in ENTRIES})

    k._serial_fns = k._serial
    k._serial, k._par = logged("serial"), logged("parallel")
    return k, log


@pytest.mark.slow  # -m slow (threaded kernels: 4-7 s of compile, cold)
def test_parallel_none_picks_serial_below_the_threshold_and_threads_from_it(decay,
                                                                            monkeypatch):
    monkeypatch.setattr(scalar, "PARALLEL_THRESHOLD", 100)
    k, log = _recorded(decay, None)
    assert decay.parallel is None
    small, big = _data(99), _data(100)
    x = [1.0, 0.5]
    want = k.normal(x, **small)
    k.residuals(x, **small)
    assert log == ["serial normal", "serial residuals"]
    got = k.normal(x, **big)
    assert log[-1] == "parallel normal"  # from the threshold on
    # rows choose by the samples asked for (hi - lo), not by N
    k.rows(x, 0, 10, **big)
    k.rows(x, 0, 100, **big)
    assert log[-2:] == ["serial rows", "parallel rows"]
    assert np.isfinite(want[0]).all() and np.isfinite(got[0]).all()


@pytest.mark.slow  # -m slow (threaded kernels: 6 s of compile, cold)
def test_parallel_false_never_threads_and_true_always_does(decay):
    off = sg.compile_residuals(decay.expr, decay.problem.params, parallel=False)
    on = sg.compile(decay.expr, decay.problem.params, kind="residual", parallel=True)
    assert (off.parallel, on.parallel) == (False, True)
    assert off.path == on.path == decay.path  # one module, one key: the choice is per call
    data = _data(500_000 // 64)  # below the default threshold: only True threads
    k_off, log_off = _recorded(decay, False)
    k_on, log_on = _recorded(decay, True)
    for k in (k_off, k_on):
        k.normal([1.0, 0.5], **data)
        k.jvp([1.0, 0.5], [1.0, 0.0], **data)
    assert log_off == ["serial normal", "serial jvp"]
    assert log_on == ["parallel normal", "parallel jvp"]


@pytest.mark.slow  # -m slow (threaded kernels: 4-7 s of compile, cold)
def test_parameter_only_residuals_are_serial_and_take_every_parallel_option():
    a, b = sg.params("a b")
    resid = [10 * (b - a**2), 1 - a]
    for parallel in (None, True, False):
        rk = sg.compile_residuals(resid, [a, b], parallel=parallel)
        assert not any(hasattr(rk.module, f"{e}_parallel") for e in ENTRIES)
        assert "prange" not in rk.source and "parallel=True" not in rk.source
        J, r = rk.jacobian([-1.2, 1.0]), rk.residuals([-1.2, 1.0])
        A, g, rtr = rk.normal([-1.2, 1.0])
        np.testing.assert_allclose(A, J.T @ J, rtol=1e-15)
        np.testing.assert_allclose(g, J.T @ r, rtol=1e-15)
        np.testing.assert_allclose(rtr, r @ r, rtol=1e-15)
        fit = sg.least_squares(rk, [-1.2, 1.0])
        np.testing.assert_allclose(fit.x, [1.0, 1.0], rtol=1e-10)


def test_threaded_calls_are_the_serial_bits_without_a_prange_compile(decay):
    """Every entry on threads (1 and 2 of them) against the kernel's serial calls (the same
    chunk functions in one run), and the passes that sum against the module's serial drivers,
    on five chunks of uneven length; a kernel compiles neither the drivers nor their
    ``prange`` twins (a first fit on 100,000 samples: 4.4 s cold, now 1.5-2.0 s)."""
    rng = np.random.default_rng(4)
    n = 5 * CHUNK + 11
    data = _data(n, seed=5)
    cols = decay.data_args(data)
    x, v = np.array([1.3, 0.8]), rng.standard_normal(2)
    u, js, rs = rng.standard_normal(n), rng.uniform(0.5, 2.0, n), rng.uniform(0.5, 2.0, n)
    k = type(decay)(decay.problem, decay.source, decay.path, decay.module, decay.policy,
                    parallel=True)

    def calls(fns):
        return _calls(types.SimpleNamespace(M_PER_SAMPLE=1, **vars(fns)), False, x, v, u, js,
                      rs, cols)

    serial = calls(k._serial)
    assert not any(getattr(decay.module, e).signatures for e in ("rows", "jvp", "residuals"))
    before = numba.get_num_threads()
    try:
        for t in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(t)
            for s, p in zip(serial, calls(k._par), strict=True):
                assert np.isfinite(s).all()
                np.testing.assert_array_equal(s, p)
    finally:
        numba.set_num_threads(before)
    assert not any(getattr(decay.module, f"{e}_parallel").signatures for e in ENTRIES)
    # the sums, through the kernel's public calls, are the drivers' bits
    A, g, rtr = k.normal(x, js, rs, **data)
    A2, g2 = np.empty((2, 2)), np.empty(2)
    rtr2 = decay.module.normal(x, A2, g2, js, rs, *cols)
    for got, want in zip((A, g, rtr), (A2, g2, rtr2), strict=True):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(k.vjp(x, u, **data), decay.module.vjp(x, u, np.empty(2), *cols))


def test_dask_worker_chunks_are_the_kernels_bits_without_the_drivers(two):
    """A worker runs a chunk as a serial kernel does (the chunk functions in order): every
    pass gives the in-memory kernel's bits on that chunk's samples, and the worker compiles no
    driver (their argument checks: 1.2 s of a cold worker's first call)."""
    data = _data(4 * CHUNK + 9, seed=6)
    lo, hi = CHUNK + 3, 4 * CHUNK + 9  # a chunk that does not start at sample 0
    part = {k: v[lo:hi] for k, v in data.items()}
    m, P = two.m, two.n_params
    rng = np.random.default_rng(7)
    x, v, u = np.array([1.6, 1.1, 0.3]), rng.standard_normal(P), rng.standard_normal(hi * m)
    before = {e: len(getattr(two.module, e).signatures) for e in ENTRIES}

    def run(what, w=None):
        return chunk_rows(ModuleSpec.of(two), what, x, w, (1, lo), part["t"], part["y"],
                          names=("t", "y"))

    A, g, rtr = two.normal(x, **part)
    np.testing.assert_array_equal(run("normal"), np.concatenate([A.ravel(), g, [rtr]]))
    np.testing.assert_array_equal(run("residuals"), two.residuals(x, **part))
    np.testing.assert_array_equal(run("jacobian"), two.jacobian(x, **part))
    np.testing.assert_array_equal(run("vjp", u), two.vjp(x, u[lo * m:], **part))
    np.testing.assert_array_equal(run("jvp", v), two.jvp(x, v, **part))
    np.testing.assert_array_equal(run("gn", v), two.vjp(x, two.jvp(x, v, **part), **part))
    assert {e: len(getattr(two.module, e).signatures) for e in ENTRIES} == before


def test_the_residual_loss_value_does_not_depend_on_the_blas_threads():
    # 0.5 * r @ r went through BLAS's threaded dot: 1 ulp apart with 1 and 2 threads
    rng = np.random.default_rng(0)
    tt = rng.uniform(0, 5, 60_000)
    yy = 2 * np.exp(-0.3 * tt) + 0.1 * rng.standard_normal(tt.size)
    a, b, c = sg.params("a b c")
    t, y = sg.data("t y")
    f = sg.compile_residuals(a * sg.exp(-b * t) + c - y, [a, b, c], parallel=False)
    x = np.array([1.5, 0.2, 0.1])
    got = []
    try:
        for n in (1, 2):
            sg.set_blas_threads(n)
            got.append((f.value(x, t=tt, y=yy), f.value_and_grad(x, t=tt, y=yy)[0]))
    finally:
        sg.set_blas_threads(None)
    assert got[0] == got[1] and got[0][0] == got[0][1]
    r = f.residuals(x, t=tt, y=yy)
    assert got[0][0] == pytest.approx(0.5 * float(r @ r), rel=1e-14)
