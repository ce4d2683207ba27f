"""float32 residual kernels (issue 22 item 4): ``sg.compile_residuals(resid, dtype="float32")``
computes each sample's residuals and Jacobian row in float32 (float32 data columns, x rounded to
float32, float32 literals) and widens them to float64 before every sum over samples, so x,
``JᵀJ``, ``Jᵀr``, the solver and every result stay float64; the float64 module is unchanged
(tests/test_snapshots.py pins its text).

The bound used below: an entry of a residual or Jacobian row goes through at most about ten
float32 roundings (the datum, the parameters, each operation, the library ``exp``), so it is
within ``k·u`` of the float64 entry computed from the same float32 data, ``u = 2**-24`` and
``k <= 10``; a product of two entries is within ``2k·u ≈ 1.2e-6``, and so is a sum of such
products relative to the sum of their magnitudes. At the test points the sums do not cancel
by more than a factor of a few, so every sum is within 1e-5 of the float64 kernel's relative
to its largest entry (measured: 1e-9 to 2e-7). Data given as float64 are rounded to
float32 first (one more rounding: the same bound)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import sympy as sp
from float32_types import promoted

import symgrad as sg
from symgrad.lsq.objective import Objective

a, b = sg.params("a b")
t, y = sg.data("t y")
AB = [a, b]
DECAY = a * sg.exp(-b * t) - y
# two residuals per sample through a kink helper, a rational constant and a power
TWO = [a * sg.exp(-b * t) - y, sg.relu(b * t - a) - y / 3 + sp.Rational(1, 7) * (a * t) ** 2]
X0 = np.array([1.5, 1.0])
TOL = 1e-5
EPS32 = float(np.finfo(np.float32).eps)

W = sg.params("W", shape=(2, 3))
BV = sg.params("bv", shape=(2,))
XM = sg.data("Xm", shape=(3,))
YM = sg.data("Ym", shape=(2,))
LINEAR = W @ XM + BV - YM


@pytest.fixture(scope="module")
def decay():
    return sg.compile_residuals(DECAY, AB, dtype="float32"), sg.compile_residuals(DECAY, AB)


@pytest.fixture(scope="module")
def two():
    return sg.compile_residuals(TWO, AB, dtype="float32"), sg.compile_residuals(TWO, AB)


@pytest.fixture(scope="module")
def linear():
    """The fused sample loop and the array lowering of W @ Xm + bv - Ym, in float32."""
    return (sg.compile_residuals(LINEAR, dtype="float32"),
            sg.compile_residuals(LINEAR, dtype="float32", fuse=False))


def _data(n: int = 4000, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    T = rng.uniform(0.0, 3.0, n).astype(np.float32)
    Y = (2.0 * np.exp(-1.3 * T) + 0.01 * rng.standard_normal(n)).astype(np.float32)
    return {"t": T, "y": Y}


def _as64(data: dict) -> dict:
    return {k: v.astype(np.float64) for k, v in data.items()}


def _rel(got, want) -> float:
    got, want = np.asarray(got, float), np.asarray(want, float)
    return float(np.max(np.abs(got - want)) / np.max(np.abs(want)))


def _linear_data(n: int = 3000, seed: int = 1):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 3)).astype(np.float32)
    Wt, bt = np.array([[1.0, -2.0, 0.5], [0.25, 3.0, -1.0]]), np.array([0.3, -0.7])
    Y = (X @ Wt.T + bt + 0.01 * rng.standard_normal((n, 2))).astype(np.float32)
    return X, Y


# -m slow: 12 s of compile, cold (the quick set keeps the float64 totals and no promotion)
@pytest.mark.slow
@pytest.mark.parametrize("kind", ["float32", "float64"])
@pytest.mark.parametrize("which", ["decay", "two"])
def test_every_call_follows_the_float64_kernel(which, kind, request):
    """Normal sums, J rows, residuals, J v and Jᵀu of the float32 kernel on the same data
    (float32 arrays, or float64 arrays it rounds) are within the bound of the float64 kernel's
    on the float32 data; every result is float64."""
    k32, k64 = request.getfixturevalue(which)
    d32 = _data()
    given = d32 if kind == "float32" else _as64(d32)
    A32, g32, s32 = k32.normal(X0, **given)
    A64, g64, s64 = k64.normal(X0, **_as64(d32))
    assert A32.dtype == g32.dtype == np.float64 and isinstance(s32, float)
    assert _rel(A32, A64) < TOL and _rel(g32, g64) < TOL and _rel(s32, s64) < TOL
    J32, J64 = k32.jacobian(X0, **given), k64.jacobian(X0, **_as64(d32))
    assert J32.dtype == np.float64 and _rel(J32, J64) < TOL
    r32, r64 = k32.residuals(X0, **given), k64.residuals(X0, **_as64(d32))
    assert r32.dtype == np.float64 and _rel(r32, r64) < TOL
    v = np.array([0.5, -2.0])
    assert _rel(k32.jvp(X0, v, **given), k64.jvp(X0, v, **d32)) < TOL
    assert _rel(k32.vjp(X0, r64, **given), k64.vjp(X0, r64, **d32)) < TOL
    # (rows shares temporaries between r and J: float32 may round r another way)
    rows_J, rows_r = k32.rows(X0, 10, 20, **given)
    assert _rel(rows_J, J64[10 * k32.m:20 * k32.m]) < TOL
    assert _rel(rows_r, r64[10 * k32.m:20 * k32.m]) < TOL
    # scaled rows (robust losses, weights) sum the same way
    js = np.linspace(0.5, 1.5, r64.size)
    A32s, g32s, _ = k32.normal(X0, js, js, **given)
    A64s, g64s, _ = k64.normal(X0, js, js, **d32)
    assert _rel(A32s, A64s) < TOL and _rel(g32s, g64s) < TOL


def test_bind_converts_once_and_gives_the_unbound_results(decay):
    k32, _ = decay
    d64 = _as64(_data())
    bound = k32.bind(**d64)
    assert all(c.dtype == np.float32 for c in bound.cols)
    A, g, s = bound.normal(X0)
    A1, g1, s1 = k32.normal(X0, **d64)
    np.testing.assert_array_equal(A, A1)
    np.testing.assert_array_equal(g, g1)
    assert s == s1


def test_the_sums_over_samples_are_float64_totals():
    """Integer data: every residual and J entry is exact in float32 and so is each product
    in float64, while Σt² (about 2.4e8 > 2**24) is not exact in float32: float64 sums give
    the exact totals, which a float32 running sum would miss."""
    n = 200_000
    rng = np.random.default_rng(3)
    T = rng.integers(0, 61, n).astype(np.float32)
    Y = rng.integers(0, 61, n).astype(np.float32)
    # serial (the threaded pass sums the same chunks alike: test_residual_threads)
    k = sg.compile_residuals(a * t - y, [a], dtype="float32", parallel=False)
    A, g, s = k.normal([1.0], t=T, y=Y)
    T64, r = T.astype(np.float64), T.astype(np.float64) - Y
    want = (T64 @ T64, T64 @ r, r @ r)
    assert np.add.accumulate(T * T, dtype=np.float32)[-1] != want[0]  # float32: digits lost
    assert (A[0, 0], g[0], s) == want


#: arithmetic only, not "call": the residual module widens its outputs with np.float64(...)
ARITHMETIC = ("binop", "unary")


def test_no_per_sample_value_is_promoted_to_float64(two):
    k32, _ = two
    d = _data(64)
    T, Y, m = d["t"], d["y"], k32.module
    assert promoted(m.residuals, X0, np.empty(128), T, Y, ops=ARITHMETIC) == []
    J, r = np.empty((128, 2)), np.empty(128)
    assert promoted(m.rows, X0, 0, 64, J, r, T, Y, ops=ARITHMETIC) == []
    assert promoted(m.jvp, X0, np.array([1.0, 2.0]), np.empty(128), T, Y, ops=ARITHMETIC) == []


def test_kernel_and_module_say_they_compute_in_float32(decay):
    k32, k64 = decay
    assert k32.data_dtype == np.float32 and k32.dtype == np.float64
    assert k64.data_dtype == np.float64 and "DTYPE" not in k64.source
    assert "DTYPE = 'float32'" in k32.source and "# dtype: float32" in k32.source
    assert "regenerate with: symgrad.compile_residuals(resid, dtype='float32')" in k32.source
    assert k32.module.__file__ != k64.module.__file__  # cached under its own key
    via_compile = sg.compile(DECAY, AB, kind="residual", dtype="float32")
    assert via_compile.data_dtype == np.float32 and via_compile.source == k32.source


@pytest.mark.slow  # -m slow (the quick set keeps the float64 totals and no promotion)
def test_generated_float32_module_imports_and_runs(decay, tmp_path):
    k32, _ = decay
    path = sg.generate(DECAY, tmp_path / "decay32.py", AB, kind="residual", dtype="float32")
    text = path.read_text()
    assert "# dtype: float32" in text.split('"""')[0] and "DTYPE = 'float32'" in text
    assert f"symgrad.generate(resid, '{path.as_posix()}', kind='residual', dtype='float32')" \
        in text
    spec = importlib.util.spec_from_file_location("decay32", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    d = _data(500)
    A, g = np.empty((2, 2)), np.empty(2)
    s = mod.normal(X0, A, g, None, None, d["t"], d["y"])
    A1, g1, s1 = k32.normal(X0, **d)
    np.testing.assert_array_equal(A, A1)
    np.testing.assert_array_equal(g, g1)
    assert s == s1 and mod.DTYPE == "float32"


@pytest.mark.slow  # -m slow (the quick set keeps the float64 totals and no promotion)
def test_a_datum_beyond_float32_is_named_not_read_as_inf(decay, linear):
    k32, _ = decay
    d = _as64(_data(50))
    d["y"][17] = -5e39
    msg = r"data column 'y' has -5e\+39 at row 17, beyond the range of float32"
    for call in (lambda: k32.normal(X0, **d), lambda: k32.residuals(X0, **d),
                 lambda: k32.bind(**d), lambda: sg.least_squares(k32, X0, data=d)):
        with pytest.raises(ValueError, match=msg):
            call()
    assert np.isfinite(k32.jacobian(X0, **d)).all()  # J does not depend on y: nothing wrong
    assert np.isfinite(k32.residuals(X0, **d, batch=slice(0, 10))).all()  # row 17 not read
    with pytest.raises(ValueError, match="row 17"):
        k32.normal(X0, **d, batch=[3, 17])
    X, Y = _linear_data(40)
    Y = Y.astype(np.float64)
    Y[9, 1] = 1e40
    for k in linear:
        with pytest.raises(ValueError, match=r"data array 'Ym' has 1e\+40 at row 9, entry 1"):
            k.normal(np.zeros(8), Xm=X, Ym=Y)
        with pytest.raises(ValueError, match=r"data array 'Ym' has 1e\+40 at row 9"):
            k.bind(Xm=X, Ym=Y)


def test_dtypes_other_than_float64_and_float32_are_refused(tmp_path):
    for bad in ("float16", np.int32, "complex64"):
        with pytest.raises(ValueError, match="dtype must be 'float64' or 'float32'"):
            sg.compile_residuals(DECAY, AB, dtype=bad)
    with pytest.raises(ValueError, match="dtype must be 'float64' or 'float32'"):
        sg.generate(DECAY, tmp_path / "m.py", AB, kind="residual", dtype="float16")
    with pytest.raises(ValueError, match="parameter-only residuals"):
        sg.compile_residuals([10 * (b - a**2), 1 - a], AB, dtype="float32")
    assert not (tmp_path / "m.py").exists()


@pytest.mark.parametrize("method", ["lm", "gn", "precise"])
@pytest.mark.parametrize("loss", ["linear", "soft_l1"])
def test_fit_equals_the_float64_fit_to_float32_accuracy(decay, method, loss):
    k32, k64 = decay
    d = _data()
    f32 = sg.least_squares(k32, [1.0, 1.0], data=d, method=method, loss=loss)
    f64 = sg.least_squares(k64, [1.0, 1.0], data=_as64(d), method=method, loss=loss)
    assert f32.success and f32.x.dtype == np.float64
    np.testing.assert_allclose(f32.x, f64.x, rtol=TOL)
    np.testing.assert_allclose(f32.x, [2.0, 1.3], atol=0.02)


def test_bounds_weights_and_statistics_run_unchanged(decay):
    k32, k64 = decay
    d = _data()
    w = np.linspace(0.5, 2.0, d["t"].size)
    kw = dict(data=d, bounds=([0.0, 0.0], [1.9, 5.0]), weights=w)
    f32 = sg.least_squares(k32, [1.0, 1.0], **kw)
    f64 = sg.least_squares(k64, [1.0, 1.0], **{**kw, "data": _as64(d)})
    assert f32.success and f32.x[0] == pytest.approx(1.9)
    np.testing.assert_allclose(f32.x, f64.x, rtol=TOL)
    np.testing.assert_allclose(f32.stderr, f64.stderr, rtol=1e-3)


@pytest.mark.slow  # -m slow (5 s of compile, cold)
@pytest.mark.parametrize("lowering", ["fused", "array"])
def test_array_residual_fit_equals_numpy_lstsq(linear, lowering):
    k = linear[0 if lowering == "fused" else 1]
    assert k.fused == (lowering == "fused") and k.data_dtype == np.float32
    X, Y = _linear_data()
    fit = sg.least_squares(k, np.zeros(8), data={"Xm": X, "Ym": Y})
    assert fit.success and fit.x.dtype == np.float64
    A = np.c_[X.astype(np.float64), np.ones(len(X))]
    sol = np.linalg.lstsq(A, Y.astype(np.float64), rcond=None)[0]  # (4, 2): W.T over b
    want = k.pack(W=sol[:3].T, bv=sol[3])
    np.testing.assert_allclose(fit.x, want, rtol=TOL, atol=TOL)


@pytest.mark.slow  # -m slow (the quick set keeps the float64 totals and no promotion)
def test_check_grad_of_a_float32_residual_kernel(decay):
    """The exact reference (the derivatives in high precision) checks the float32 gradient
    Jᵀr to float32 accuracy (the default tolerances are float64's)."""
    k32, _ = decay
    d = _data(200)
    chk = sg.check_grad(k32, X0, d, method="exact", rtol=100 * EPS32)
    assert chk.ok and chk.max_rel_err > 0


@pytest.mark.slow  # quick: test_dask_arrays_run_the_float32_array_lowering (the Dask binding)
def test_dask_columns_give_the_in_memory_results(decay):
    """A float32 kernel bound to Dask columns (float32 chunks, or float64 chunks the module
    reads as float32) runs the same fused pass per chunk; a datum beyond float32 in a chunk
    is named with its global row."""
    da = pytest.importorskip("dask.array")
    k32, _ = decay
    d = _data(10_000, seed=5)
    A, g, s = k32.normal(X0, **d)
    fit = sg.least_squares(k32, [1.0, 1.0], data=d)
    for dt in (np.float32, np.float64):
        dd = {k: da.from_array(v.astype(dt), chunks=2500) for k, v in d.items()}
        A2, g2, s2 = k32.bind(**dd).normal(X0)
        assert _rel(A2, A) < 1e-12 and _rel(g2, g) < 1e-12 and abs(s2 - s) <= 1e-12 * s
        np.testing.assert_allclose(sg.least_squares(k32, [1.0, 1.0], data=dd).x, fit.x,
                                   rtol=1e-9)
    y = d["y"].astype(np.float64)
    y[7777] = 1e40
    dd = {"t": da.from_array(d["t"], chunks=2500), "y": da.from_array(y, chunks=2500)}
    with pytest.raises(ValueError, match=r"data column 'y' has 1e\+40 at row 7777, beyond "
                                         "the range of float32"):
        k32.bind(**dd).normal(X0)


def test_dask_arrays_run_the_float32_array_lowering(linear):
    """Array residuals on Dask arrays run the array lowering's block pass per chunk, its
    float32 model's rows widened before the sums: the in-memory fit, and a datum beyond
    float32 named."""
    da = pytest.importorskip("dask.array")
    X, Y = _linear_data(4000, seed=2)
    want = sg.least_squares(linear[1], np.zeros(8), data={"Xm": X, "Ym": Y}).x
    dd = {"Xm": da.from_array(X, chunks=(1000, 3)), "Ym": da.from_array(Y, chunks=(1000, 2))}
    for k in linear:
        np.testing.assert_allclose(sg.least_squares(k, np.zeros(8), data=dd).x, want,
                                   rtol=1e-6, atol=1e-7)
    Y = Y.astype(np.float64)
    Y[2345, 0] = -1e39
    dd["Ym"] = da.from_array(Y, chunks=(1000, 2))
    with pytest.raises(ValueError, match=r"data array 'Ym' has -1e\+39 at row 2345"):
        linear[1].bind(**dd).normal(np.zeros(8))


def test_an_x_beyond_float32_is_named_not_read_as_inf(decay, linear):
    # regression: the sample loop rounds x (and v) to float32, so x = 1e39 became inf there and
    # came back as a silent NaN residual
    k32, _ = decay
    d = _data(30)
    big = np.array([1.0, 1e39])
    msg = r"x\[1\] = 1e\+39 is beyond the range of this float32 kernel"
    for call in (lambda: k32.residuals(big, **d), lambda: k32.normal(big, **d),
                 lambda: k32.jacobian(big, **d), lambda: k32.bind(**d).residuals(big),
                 lambda: sg.least_squares(k32, big, data=d)):
        with pytest.raises(ValueError, match=msg):
            call()
    with pytest.raises(ValueError, match=r"v\[1\] = -1e\+39 is beyond"):
        k32.jvp(X0, np.array([0.0, -1e39]), **d)
    X, Y = _linear_data(20)
    for k in linear:
        x = np.zeros(8)
        x[3] = 4e38
        with pytest.raises(ValueError, match=r"x\[3\] = 4e\+38 is beyond"):
            k.normal(x, Xm=X, Ym=Y)
    # inside a fit, such a trial point is a failed step (as a non-finite cost), not an error
    obj = Objective(k32.bind(**d))
    assert obj.linearize(big).cost == np.inf and np.isfinite(obj.linearize(X0).cost)
