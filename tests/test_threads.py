"""Threaded sample passes (symgrad.runtime.threads): the prange twins' bits, no prange compile."""

from __future__ import annotations

import threading

import numba
import numpy as np
import pytest

import symgrad as sg
from symgrad.runtime.threads import _helpers, run_chunks, sample_pass

a, b, c = sg.params("a b c")
t, y = sg.data("t y")


@pytest.fixture(scope="module", params=["float64", pytest.param("float32", marks=pytest.mark.slow)])
def fit(request):
    f = sg.compile(sg.mean((a * sg.exp(-b * t) + c - y) ** 2) + sg.log(sg.mean(sg.exp(b * t))),
                   dtype=request.param)
    rng = np.random.default_rng(11)
    tt = rng.uniform(0.0, 3.0, 70_000)
    return f, tt, np.exp(-0.7 * tt) + 0.01 * rng.standard_normal(tt.size)


def _each_setting(f, tt, yy):
    """(columns, batch) for 1 and 2 threads, without and with a batch."""
    idx = np.arange(3, tt.size, 2)
    cols = f.data_args({"t": tt, "y": yy})[:-1]
    saved = numba.get_num_threads()
    try:
        for threads in (1, 2):
            numba.set_num_threads(threads)
            for batch in (None, idx):
                yield cols, batch
    finally:
        numba.set_num_threads(saved)


X, V = np.array([1.1, 0.6, 0.05]), np.array([0.3, -1.0, 2.0])


def test_threaded_value_and_grad_is_the_prange_twins_bits_for_any_thread_count(fit):
    f, tt, yy = fit
    m = f.module
    for cols, batch in _each_setting(f, tt, yy):
        g1, g2 = np.empty(3), np.empty(3)
        assert f._jit_par.value_and_grad(X, g1, *cols, batch) == \
            m.value_and_grad_parallel(X, g2, *cols, batch)
        np.testing.assert_array_equal(g1, g2)


@pytest.mark.slow  # three more prange twins to compile (10 s)
def test_threaded_value_hvp_hessian_are_the_prange_twins_bits(fit):
    f, tt, yy = fit
    m = f.module
    for cols, batch in _each_setting(f, tt, yy):
        assert f._jit_par.value(X, *cols, batch) == m.value_parallel(X, *cols, batch)
        h1, h2 = np.empty(3), np.empty(3)
        f._jit_par.hvp(X, V, h1, *cols, batch)
        m.hvp_parallel(X, V, h2, *cols, batch)
        np.testing.assert_array_equal(h1, h2)
        H1, H2 = np.empty((3, 3)), np.empty((3, 3))
        f._jit_par.hessian(X, H1, *cols, batch)
        m.hessian_parallel(X, H2, *cols, batch)
        np.testing.assert_array_equal(H1, H2)


def test_a_large_call_compiles_no_prange_function():
    """Regression: a call over PARALLEL_THRESHOLD samples compiled the module's prange twins,
    about 1.3 s of Numba per function on top of the serial body's compile."""
    f = sg.compile(sg.mean((a * t + b - y) ** 2 * sg.exp(c * t)))
    tt = np.linspace(0.0, 1.0, 60_000)
    f.value_and_grad(np.array([1.0, 0.5, 0.1]), t=tt, y=tt)
    f.hvp(np.array([1.0, 0.5, 0.1]), np.ones(3), t=tt, y=tt)
    m = f.module
    assert m._rows_g.signatures and m._rows_h.signatures
    assert not m._par_g.signatures and not m._par_h.signatures
    assert not m.value_and_grad_parallel.signatures


def test_a_loss_with_index_sums_runs_its_serial_calls_on_many_samples():
    """Regression: a loss with sums over samples and an index sum has sample-loop chunk
    functions but no threaded twin (its calls are serial); the threaded calls were chosen for
    it from 50,000 samples and failed ('no attribute _finish_g')."""
    u = sg.params("u", indexed=True)
    i = sg.index("i")
    f = sg.compile(sg.mean((a * t - y) ** 2) + sg.sum(u[i] ** 2, (i, 0, u.length)))
    tt = np.linspace(0.0, 1.0, 60_000)
    x = np.array([0.5, 1.0, -2.0])
    val, g = f.value_and_grad(x, t=tt, y=2 * tt)
    assert val == pytest.approx(np.mean((0.5 * tt - 2 * tt) ** 2) + 5.0, rel=1e-12)
    np.testing.assert_allclose(g, [np.mean(2 * (0.5 * tt - 2 * tt) * tt), 2.0, -4.0],
                               rtol=1e-12)


def test_an_error_in_any_thread_reaches_the_caller_without_a_hang():
    def rows(n, nc, lo, hi, out):
        if nc == 64 and lo <= 3 < hi:
            raise ValueError("chunk 3")
        out[lo:hi] = 1.0

    saved = numba.get_num_threads()
    try:
        for threads in (1, 2):
            numba.set_num_threads(threads)
            with pytest.raises(ValueError, match="chunk 3"):
                sample_pass(rows, (), (), 64 * 2048, 2)
            np.testing.assert_array_equal(sample_pass(rows, (), (), 10 * 2048, 2), [10.0, 10.0])
    finally:
        numba.set_num_threads(saved)


def test_every_chunk_runs_once_and_a_busy_helper_does_not_hold_the_caller():
    """Each thread takes its own share of the chunks from the front and the others' from the
    back once done: every chunk runs exactly once, on any thread count, and a helper kept busy
    elsewhere (here: blocked until the call has returned) leaves its share to the caller."""
    saved = numba.get_num_threads()
    try:
        for threads in sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)}):
            numba.set_num_threads(threads)
            for nc in (1, 3, 8, 64):
                seen = []
                run_chunks(lambda k0, k1: seen.extend(range(k0, k1)), nc)  # noqa: B023
                assert sorted(seen) == list(range(nc))
        if numba.config.NUMBA_NUM_THREADS < 2:  # no helper to keep busy
            return
        numba.set_num_threads(2)
        release, ran_by = threading.Event(), set()
        _helpers().queues[0].put(lambda w: release.wait(10))
        run_chunks(lambda k0, k1: ran_by.add(threading.get_ident()), 64)
        assert ran_by == {threading.get_ident()}  # the caller ran every run
        release.set()
    finally:
        numba.set_num_threads(saved)
