"""Data handling of compiled data losses: batches, float32 columns, serial vs parallel passes,
strided/Fortran-ordered columns, and data validation errors that name the column and row."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

import symgrad as sg
from symgrad.lang import losses

RTOL = 1e-12


@pytest.fixture(scope="module")
def quad():
    """mse of the seed's quadratic model: 1-D columns t, y."""
    a, b, c = sg.params("a b c")
    t, y = sg.data("t y")
    f = sg.compile(losses.mse(a * t**2 + b * t + c, y), params=[a, b, c])
    return f


@pytest.fixture(scope="module")
def lin():
    """Linear model on a data array z (N, 3) with a 1-D target: exercises 2-D data arrays."""
    w = sg.params("w", shape=(3,))
    z = sg.data("z", shape=(3,))
    y = sg.data("y")
    f = sg.compile(losses.mse(w @ z, y) + losses.l2(w, weight=1e-3), params=[w], fuse=False)
    return f


@pytest.fixture(scope="module")
def cols():
    rng = np.random.default_rng(3)
    n = 1000
    t = rng.uniform(-2, 2, n)
    y = 0.5 * t**2 - t + 1 + 0.1 * rng.normal(size=n)
    z = rng.normal(size=(n, 3))
    yz = z @ np.array([1.0, -2.0, 0.5]) + 0.1 * rng.normal(size=n)
    return t, y, z, yz


P = np.array([0.3, -0.8, 1.7])
V = np.array([1.0, -0.5, 2.0])


def _all(f, p, v, **kw):
    """value, gradient, HVP and Hessian of f at p (data/batch in kw)."""
    return (f.value(p, **kw), f.grad(p, **kw), f.hvp(p, v, **kw), f.hessian(p, **kw))


def _close(got, want, rtol=RTOL):
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=rtol)


# -- batches ----------------------------------------------------------------------------------
BATCHES = {
    "index": lambda n: np.random.default_rng(0).choice(n, 137, replace=False),
    "index-repeated-unsorted": lambda n: np.array([5, 3, 3, n - 1, 0, 5]),
    "index-negative": lambda n: np.array([-1, -2, 10]),
    "index-int32": lambda n: np.arange(0, n, 7, dtype=np.int32),
    "mask": lambda n: np.random.default_rng(1).random(n) < 0.3,
    "slice": lambda n: slice(100, 400),
    "slice-step": lambda n: slice(3, None, 5),
    "slice-negative-step": lambda n: slice(None, None, -3),
}


@pytest.mark.parametrize("name", list(BATCHES))
def test_batch_equals_copied_subset_1d(quad, cols, name):
    t, y, _, _ = cols
    batch = BATCHES[name](len(t))
    _close(_all(quad, P, V, t=t, y=y, batch=batch),
           _all(quad, P, V, t=t[batch].copy(), y=y[batch].copy()))


@pytest.mark.parametrize("name", list(BATCHES))
def test_batch_equals_copied_subset_vector_column(lin, cols, name):
    _, _, z, yz = cols
    batch = BATCHES[name](len(yz))
    _close(_all(lin, P, V, z=z, y=yz, batch=batch),
           _all(lin, P, V, z=z[batch].copy(), y=yz[batch].copy()))


@pytest.mark.parametrize("parallel", [pytest.param(True, marks=pytest.mark.slow), False])
def test_batch_in_both_variants_and_bound(cols, parallel):
    # (the threaded variant compiles every entry under prange: about 16 s, cold; -m slow runs it)
    a, b, c = sg.params("a b c")
    t, y = sg.data("t y")
    f = sg.compile(losses.mse(a * t**2 + b * t + c, y), params=[a, b, c], parallel=parallel)
    ts, ys, _, _ = cols
    idx = np.random.default_rng(4).choice(len(ts), 500, replace=False)
    _close(_all(f, P, V, t=ts, y=ys, batch=idx), _all(f, P, V, t=ts[idx].copy(), y=ys[idx].copy()))
    fb = f.bind(t=ts[idx].copy(), y=ys[idx].copy())
    _close(_all(fb, P, V), _all(f, P, V, t=ts, y=ys, batch=idx))


def test_raw_jit_with_data_args(quad, cols):
    t, y, _, _ = cols
    idx = np.arange(0, 1000, 3)
    args = quad.data_args({"t": t, "y": y}, batch=idx)
    g = np.empty(3)
    val = quad.jit.value_and_grad(P, g, *args)
    want = quad.value_and_grad(P, t=t[idx].copy(), y=y[idx].copy())
    np.testing.assert_allclose(val, want[0], rtol=RTOL)
    np.testing.assert_allclose(g, want[1], rtol=RTOL)


# -- memory layouts ---------------------------------------------------------------------------
def test_strided_and_fortran_columns(lin, quad, cols):
    t, y, z, yz = cols
    table = np.stack([t, y], axis=1)  # columns of a table are strided views
    _close(_all(quad, P, V, t=table[:, 0], y=table[:, 1]), _all(quad, P, V, t=t, y=y))
    _close(_all(lin, P, V, z=np.asfortranarray(z), y=yz), _all(lin, P, V, z=z, y=yz))
    wide = np.concatenate([z, z], axis=1)[:, ::2]  # non-contiguous 2-D view
    _close(_all(lin, P, V, z=wide, y=yz), _all(lin, P, V, z=np.ascontiguousarray(wide), y=yz))


def test_integer_columns_are_accepted(quad):
    t = np.arange(10)
    y = t * t
    _close(_all(quad, P, V, t=t, y=y), _all(quad, P, V, t=t.astype(float), y=y.astype(float)))


# -- float32 columns --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def f32():
    rng = np.random.default_rng(9)
    t = rng.normal(size=5000).astype(np.float32)
    y = (0.5 * t**2 - t + rng.normal(size=5000)).astype(np.float32)
    z = rng.normal(size=(5000, 3)).astype(np.float32)
    return t, y, z


def test_float32_columns_accumulate_in_float64(quad, lin, f32):
    t, y, z = f32
    _close(_all(quad, P, V, t=t, y=y), _all(quad, P, V, t=t.astype(np.float64),
                                               y=y.astype(np.float64)))
    _close(_all(lin, P, V, z=z, y=y), _all(lin, P, V, z=z.astype(np.float64),
                                           y=y.astype(np.float64)))


def test_float32_columns_within_float32_rounding(quad, lin, f32):
    t, y, z = f32
    got = _all(quad, P, V, t=t, y=y)
    _close(got, _all(quad, P, V, t=t.astype(np.float64), y=y.astype(np.float64)), rtol=1e-6)
    assert all(np.all(np.isfinite(g)) for g in got)
    assert isinstance(got[0], float) and got[1].dtype == np.float64
    _close(_all(lin, P, V, z=z, y=y), _all(lin, P, V, z=z.astype(np.float64),
                                           y=y.astype(np.float64)), rtol=1e-6)


# quick: test_float32_columns_accumulate_in_float64 and test_batch_equals_copied_subset_1d
@pytest.mark.slow
def test_float32_mixed_with_float64_and_batch(quad, f32):
    t, y, _ = f32
    y64 = y.astype(np.float64)
    idx = np.arange(0, len(t), 11)
    _close(_all(quad, P, V, t=t, y=y64, batch=idx),
           _all(quad, P, V, t=t[idx].copy(), y=y64[idx].copy()))


# -- parallel and serial passes agree ---------------------------------------------------------
@pytest.fixture(scope="module")
def big():
    rng = np.random.default_rng(12)
    n = 200_000
    t = rng.uniform(-3, 3, n)
    y = 0.5 * t**2 - t + 1 + rng.normal(size=n)
    z = rng.normal(size=(n, 3))
    return t, y, z


@pytest.mark.slow  # -m slow (threaded kernels: 11 s of compile, cold)
def test_parallel_matches_serial_large(big):
    a, b, c = sg.params("a b c")
    t, y = sg.data("t y")
    loss = losses.mse(a * t**2 + b * t + c, y)
    fs = sg.compile(loss, params=[a, b, c], parallel=False)
    fp = sg.compile(loss, params=[a, b, c], parallel=True)
    fd = sg.compile(loss, params=[a, b, c])  # default: parallel above the threshold
    ts, ys, _ = big
    serial = _all(fs, P, V, t=ts, y=ys)
    _close(_all(fp, P, V, t=ts, y=ys), serial)
    _close(_all(fd, P, V, t=ts, y=ys), serial)
    idx = np.random.default_rng(2).choice(len(ts), 150_000, replace=False)
    _close(_all(fp, P, V, t=ts, y=ys, batch=idx), _all(fs, P, V, t=ts, y=ys, batch=idx))
    # both against a float64 NumPy oracle
    X = np.stack([ts**2, ts, np.ones_like(ts)], axis=1)
    r = X @ P - ys
    np.testing.assert_allclose(serial[0], np.mean(r**2), rtol=1e-11)
    np.testing.assert_allclose(serial[1], 2 * X.T @ r / len(ts), rtol=1e-11)


def test_array_kernel_large_matches_numpy(lin, big):
    """The array kernel on 200,000 rows (one pass, no parallel variant) against NumPy, whole and
    on a batch."""
    _, ys, zs = big
    r = zs @ P - ys
    val, g = lin.value_and_grad(P, z=zs, y=ys)
    np.testing.assert_allclose(val, np.mean(r**2) + 1e-3 * P @ P, rtol=1e-11)
    np.testing.assert_allclose(g, 2 * zs.T @ r / len(ys) + 2e-3 * P, rtol=1e-11)
    H = 2 * zs.T @ zs / len(ys) + 2e-3 * np.eye(3)
    np.testing.assert_allclose(lin.hvp(P, V, z=zs, y=ys), H @ V, rtol=1e-11)
    idx = np.random.default_rng(2).choice(len(ys), 150_000, replace=False)
    _close(_all(lin, P, V, z=zs, y=ys, batch=idx), _all(lin, P, V, z=zs[idx].copy(),
                                                         y=ys[idx].copy()))


# -- validation errors name the column, the row and what to do ---------------------------------
def test_missing_and_unexpected_columns(quad, cols):
    t, y, _, _ = cols
    with pytest.raises(TypeError, match="missing data column 'y'"):
        quad.value(P, t=t)
    with pytest.raises(TypeError, match="missing data column 't'"):
        quad.grad(P)
    with pytest.raises(TypeError, match="unexpected data column 'w'"):
        quad.value(P, t=t, y=y, w=y)
    with pytest.raises(TypeError, match="missing data column 'y'"):
        quad.bind(t=t)
    with pytest.raises(TypeError, match="missing data column"):
        quad.data_args({"t": t})


def test_parameter_only_loss_rejects_data():
    a = sg.params("a")
    f = sg.compile((a - 1) ** 2)
    with pytest.raises(TypeError, match="takes no data, got t"):
        f.value([0.0], t=np.ones(3))
    with pytest.raises(TypeError, match="batch= needs a loss with data"):
        f.value([0.0], batch=np.arange(2))
    assert f.data_args(None) == ()


def test_mismatched_lengths(quad, lin, cols):
    t, y, z, yz = cols
    with pytest.raises(ValueError, match=r"'y' has 999 samples but 't' has 1000"):
        quad.value(P, t=t, y=y[:-1])
    with pytest.raises(ValueError, match=r"'z' has 10 samples but 'y' has 1000|"
                       r"'y' has 1000 samples but 'z' has 10"):
        lin.value(P, z=z[:10], y=yz)


def test_wrong_dimensions(quad, lin, cols):
    t, y, z, yz = cols
    with pytest.raises(ValueError, match=r"column 't' must have shape \(N,\), got \(1000, 1\)"):
        quad.value(P, t=t[:, None], y=y)
    with pytest.raises(ValueError, match=r"data array 'z' must have shape \(samples, 3\), got "
                       r"shape \(1000,\)"):
        lin.value(P, z=yz, y=yz)
    with pytest.raises(ValueError, match=r"data array 'z' has size 2 on axis 1; the loss needs 3"):
        lin.value(P, z=z[:, :2], y=yz)
    with pytest.raises(ValueError, match=r"data column 'y' must have shape \(N,\)"):
        quad.value(P, t=t, y=np.float64(3.0))


def test_wrong_dtype(quad, cols):
    t, y, _, _ = cols
    with pytest.raises(TypeError, match="data column 'y' has dtype complex128"):
        quad.value(P, t=t, y=y.astype(complex))
    with pytest.raises(TypeError, match="data column 't'"):
        quad.value(P, t=np.array(["a", "b"]), y=np.ones(2))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_name_column_and_first_row(quad, lin, cols, bad):
    t, y, z, yz = cols
    y2 = y.copy()
    y2[[7, 500]] = bad
    with pytest.raises(ValueError, match=r"data column 'y' has a non-finite value .* at row 7\b"):
        quad.value(P, t=t, y=y2)
    with pytest.raises(ValueError, match=r"data column 'y' .* row 7\b"):
        quad.bind(t=t, y=y2)
    z2 = z.copy()
    z2[3, 1] = bad
    z2[40, 0] = bad
    # the array kernel names the array, the first row and the entry within it (one rule)
    with pytest.raises(ValueError, match=r"data array 'z' has a non-finite value .* at row 3, "
                       r"entry 1: clean or drop"):
        lin.value_and_grad(P, z=z2, y=yz)
    t32 = t.astype(np.float32)
    t32[12] = bad
    with pytest.raises(ValueError, match=r"data column 't' .* at row 12\b"):
        quad.hvp(P, V, t=t32, y=y)


def _no_scan(monkeypatch):
    """Make any NaN/inf scan of the data fail the test (both kernels, both scan paths)."""
    from symgrad.runtime import array as akernel
    from symgrad.runtime import datacheck
    from symgrad.runtime import scalar as kernel

    def scanned(*a, **k):
        raise AssertionError("the data were scanned for NaN/inf")

    for mod in (datacheck, kernel, akernel):
        for name in ("non_finite_error", "raise_non_finite"):
            if hasattr(mod, name):
                monkeypatch.setattr(mod, name, scanned)


def test_per_call_data_are_not_scanned_when_the_result_is_finite(quad, lin, cols, monkeypatch):
    """Regression (issue 12): every call scanned every column for NaN/inf (4.5x the bound call
    at N = 1e6); now a finite result proves the columns it read were finite."""
    t, y, z, yz = cols
    want = quad.value_and_grad(P, t=t, y=y)[0], lin.value_and_grad(P, z=z, y=yz)[0]
    _no_scan(monkeypatch)
    assert quad.value_and_grad(P, t=t, y=y)[0] == want[0]
    assert lin.value_and_grad(P, z=z, y=yz)[0] == want[1]
    quad.value(P, t=t, y=y), quad.hvp(P, V, t=t, y=y), quad.hessian(P, t=t, y=y)
    lin.value(P, z=z, y=yz), lin.hvp(P, V, z=z, y=yz), lin.hessian(P, z=z, y=yz)
    with pytest.raises(AssertionError, match="scanned"):  # bind still validates once, fully
        quad.bind(t=t, y=y)


@pytest.mark.parametrize("call", ["value", "value_and_grad", "hvp", "hessian"])
def test_non_finite_result_names_the_column_and_row(quad, lin, cols, call):
    t, y, z, yz = cols
    y2, z2 = y.copy(), z.copy()
    y2[[9, 600]] = np.nan
    z2[11, 2] = -np.inf
    args = (P, V) if call == "hvp" else (P,)
    with pytest.raises(ValueError, match=r"data column 'y' has a non-finite value \(nan\) at "
                       r"row 9: clean or drop"):
        getattr(quad, call)(*args, t=t, y=y2)
    with pytest.raises(ValueError, match=r"data array 'z' has a non-finite value \(-inf\) at "
                       r"row 11, entry 2: clean or drop"):
        getattr(lin, call)(*args, z=z2, y=yz)


def test_non_finite_rows_outside_the_batch_are_not_read(quad, lin, cols):
    """A batch reads only its rows: NaN elsewhere does not matter; NaN inside is named by its
    row in the full column."""
    t, y, z, yz = cols
    y2, z2 = y.copy(), z.copy()
    y2[500] = z2[500, 0] = np.nan
    for batch in (slice(0, 100), np.arange(100), np.arange(1000) < 100):
        assert quad.value(P, t=t, y=y2, batch=batch) == quad.value(P, t=t, y=y, batch=batch)
        assert lin.value(P, z=z2, y=yz, batch=batch) == lin.value(P, z=z, y=yz, batch=batch)
    for batch in (slice(450, 550), np.array([3, 500, 7]), np.arange(1000) > 400):
        with pytest.raises(ValueError, match=r"data column 'y' .* at row 500: clean"):
            quad.value(P, t=t, y=y2, batch=batch)
        with pytest.raises(ValueError, match=r"data array 'z' .* at row 500, entry 0: clean"):
            lin.value_and_grad(P, z=z2, y=yz, batch=batch)


def test_losses_that_can_hide_a_nan_still_scan_every_call(cols):
    """``max(0.0, nan)`` is 0.0 and a Piecewise branch skips a NaN: such losses keep the scan."""
    from symgrad.runtime.datacheck import may_hide

    t, y, _, _ = cols
    a = sg.params("a")
    ts, ys = sg.data("t y")
    hinge = sg.mean(sp.Max(0, 1 - a * ts * ys))
    assert may_hide(hinge) and not may_hide(losses.mse(a * ts, ys))
    f = sg.compile(hinge, params=[a])
    y2 = y.copy()
    y2[5] = np.nan
    with pytest.raises(ValueError, match=r"data column 'y' has a non-finite value \(nan\) at "
                       r"row 5"):
        f.value(np.array([0.5]), t=t, y=y2)


def test_bad_batches(quad, cols):
    t, y, _, _ = cols
    n = len(t)
    with pytest.raises(ValueError, match=rf"boolean batch mask must have shape \({n},\)"):
        quad.value(P, t=t, y=y, batch=np.ones(n - 1, bool))
    with pytest.raises(IndexError, match=rf"batch indices must lie in \[-{n}, {n}\)"):
        quad.value(P, t=t, y=y, batch=np.array([0, n]))
    with pytest.raises(ValueError, match="selects no samples"):
        quad.value(P, t=t, y=y, batch=slice(5, 5))
    with pytest.raises(ValueError, match="selects no samples"):
        quad.value(P, t=t, y=y, batch=np.zeros(n, bool))
    with pytest.raises(ValueError, match="selects no samples"):  # a float array to NumPy
        quad.value(P, t=t, y=y, batch=[])
    with pytest.raises(TypeError, match="batch must be a slice, an integer index array"):
        quad.value(P, t=t, y=y, batch=np.array([0.0, 1.0]))


def test_empty_columns(quad):
    with pytest.raises(ValueError, match="columns are empty"):
        quad.value(P, t=np.empty(0), y=np.empty(0))


@pytest.mark.parametrize("dtype", [">f4", ">f8"])
def test_big_endian_columns_are_read_as_their_values(dtype):
    # a big-endian float32 column was refused: "has dtype >f4: pass float64 or float32"
    a, b = sg.params("a b")
    t, y = sg.data("t y")
    tn = np.linspace(0, 1, 7)
    yn = 3 * tn + 1
    f = sg.compile(sg.mean((a * t + b - y) ** 2), dtype="float32")
    rk = sg.compile_residuals(a * t + b - y)
    want = f.value_and_grad([1.0, 0.5], t=tn.astype(np.float32), y=yn.astype(np.float32))
    got = f.value_and_grad([1.0, 0.5], t=tn.astype(dtype), y=yn.astype(dtype))
    assert got[0] == want[0]
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_array_equal(rk.residuals([1.0, 0.5], t=tn.astype(dtype), y=yn.astype(dtype)),
                                  rk.residuals([1.0, 0.5], t=tn.astype(dtype).astype(np.float64),
                                               y=yn.astype(dtype).astype(np.float64)))
