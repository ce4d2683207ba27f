"""Residuals with (N, k) component columns, and array residuals fused into one sample loop.

Component columns: ``Data("X[:, j]", "X", j, k)`` symbols read ``X[i, j]`` in the residual
module (what :func:`symgrad.passes.fuse.unroll` gives for a per-sample array). Fused array
residuals (``W @ X + b - Y`` through ``unroll`` and the scalar residual module) are checked
against the array lowering (``fuse=False``) and NumPy.
"""

import numpy as np
import pytest

import symgrad as sg
from symgrad.errors import ProblemError
from symgrad.ir.residual_problem import residual_problem
from symgrad.ir.symtypes import Data

da = pytest.importorskip("dask.array")


def _components(name: str, k: int):
    return [Data(f"{name}[:, {j}]", name, j, k) for j in range(k)]


@pytest.fixture(scope="module")
def component():
    """r = (a*X0 + b*X1 - y, a*b*X1 - y): two residuals per sample, X an (N, 2) column."""
    a, b = sg.params("a b")
    y = sg.data("y")
    X0, X1 = _components("X", 2)
    rk = sg.compile_residuals([a * X0 + b * X1 - y, a * b * X1 - y])
    rng = np.random.default_rng(20)
    data = {"X": rng.standard_normal((50, 2)), "y": rng.standard_normal(50)}
    return rk, data


def _ref(x, X, y):
    a, b = x
    r = np.stack([a * X[:, 0] + b * X[:, 1] - y, a * b * X[:, 1] - y], axis=1)
    J = np.zeros((len(y), 2, 2))
    J[:, 0, 0], J[:, 0, 1] = X[:, 0], X[:, 1]
    J[:, 1, 0], J[:, 1, 1] = b * X[:, 1], a * X[:, 1]
    return r.ravel(), J.reshape(-1, 2)


@pytest.mark.slow  # -m slow (5-6 s of compile each, cold; the fused lstsq fit stays quick)
def test_component_columns_read_rows_of_an_n_by_k_array(component):
    rk, data = component
    assert rk.data_names == ("X", "y") and rk.widths == {"X": 2, "y": None}
    assert "np.float64(X[i, 1])" in rk.source and "X[N, 2], y[N]" in rk.source
    x = np.array([0.7, -1.3])
    r, J = _ref(x, data["X"], data["y"])
    np.testing.assert_allclose(rk.residuals(x, **data), r, rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(rk.jacobian(x, **data), J, rtol=1e-14, atol=1e-14)
    A, g, rtr = rk.bind(**data).normal(x)
    np.testing.assert_allclose(A, J.T @ J, rtol=1e-13)
    np.testing.assert_allclose(g, J.T @ r, rtol=1e-13, atol=1e-13)
    assert rtr == pytest.approx(r @ r, rel=1e-13)
    idx = np.array([3, 7, 7, 41])
    np.testing.assert_allclose(rk.residuals(x, batch=idx, **data),
                               r.reshape(50, 2)[idx].ravel(), rtol=1e-14, atol=1e-14)
    Jr, rr = rk.rows(x, 5, 9, **data)
    np.testing.assert_allclose(rr, r[10:18], rtol=1e-14, atol=1e-14)
    np.testing.assert_array_equal(Jr, rk.jacobian(x, **data)[10:18])


@pytest.mark.slow  # -m slow (5 s of compile, cold)
def test_component_columns_fit_with_weights(component):
    rk, data = component
    w = np.random.default_rng(21).uniform(0.5, 2.0, 50)
    fit = sg.least_squares(rk, [0.5, 0.5], data=data, weights=w, loss="soft_l1")
    assert fit.success and fit.x.shape == (2,)


def test_component_column_shape_errors_name_the_column(component):
    rk, data = component
    with pytest.raises(ValueError, match=r"'X' must have shape \(N, 2\)"):
        rk.residuals([1.0, 1.0], X=data["X"][:, 0], y=data["y"])
    with pytest.raises(ValueError, match=r"'X' must have 2 entries per sample"):
        rk.residuals([1.0, 1.0], X=np.ones((50, 3)), y=data["y"])
    with pytest.raises(ValueError, match=r"'y' must have shape \(N,\)"):
        rk.residuals([1.0, 1.0], X=data["X"], y=data["X"])
    bad = data["X"].copy()
    bad[12, 1] = np.nan
    with pytest.raises(ValueError, match=r"'X' has a non-finite value \(nan\) at row 12"):
        rk.normal([1.0, 1.0], X=bad, y=data["y"])
    # the generated module checks the width itself (a direct call reads no memory out of range)
    with pytest.raises(ValueError, match=r"data column X must have shape \(N, 2\)"):
        rk.module.residuals(np.ones(2), np.empty(100), np.ones((50, 1)), data["y"])


def test_one_column_in_two_layouts_is_refused():
    a = sg.params("a")
    (x0,) = _components("x", 1)
    with pytest.raises(ProblemError, match=r"'x' is declared twice with different layouts"):
        residual_problem([a * x0 - Data("x", "x")])


def test_component_columns_on_dask_equal_in_memory(component):
    rk, data = component
    x = np.array([0.4, 0.9])
    ddata = {"X": da.from_array(data["X"], chunks=(17, 2)), "y": da.from_array(data["y"], 13)}
    A, g, rtr = rk.bind(**ddata).normal(x)
    A0, g0, rtr0 = rk.bind(**data).normal(x)
    np.testing.assert_allclose(A, A0, rtol=1e-13)
    np.testing.assert_allclose(g, g0, rtol=1e-13, atol=1e-14)
    assert rtr == pytest.approx(rtr0, rel=1e-13)
    np.testing.assert_allclose(rk.bind(**ddata).residuals(x), rk.residuals(x, **data),
                               rtol=1e-14, atol=1e-14)
    with pytest.raises(ValueError, match=r"'X' must have shape \(N, 2\)"):
        rk.bind(X=da.zeros((50, 3)), y=ddata["y"])


# -- array residuals: the fused sample loop against the array lowering ------------------------
K, D = 3, 2


@pytest.fixture(scope="module")
def lowerings():
    """tanh(W @ X + b) - Y by both lowerings, with data."""
    W, b = sg.params("W", shape=(K, D)), sg.params("b", shape=(K,))
    X, Y = sg.data("X", shape=(D,)), sg.data("Y", shape=(K,))
    expr = sg.tanh(W @ X + b) - Y
    rng = np.random.default_rng(30)
    data = {"X": rng.standard_normal((700, D)), "Y": rng.standard_normal((700, K))}
    return (sg.compile_residuals(expr, fuse=True), sg.compile_residuals(expr, fuse=False),
            data)


def _close(a, b, rtol=1e-12):
    """Equal to ``rtol`` relative to the largest entry of ``b``."""
    np.testing.assert_allclose(a, b, rtol=0, atol=rtol * np.abs(b).max())


@pytest.mark.slow  # the quick set fits both lowerings against lstsq
def test_fused_and_array_lowerings_agree(lowerings):
    fused, array, data = lowerings
    assert fused.fused and not array.fused and type(fused).__name__ == "FusedArrayResiduals"
    assert fused.params == array.params == fused.labels
    assert (fused.m, fused.shape, fused.data_names) == (array.m, array.shape, array.data_names)
    assert fused.shapes == array.shapes == {"W": (K, D), "b": (K,)}
    rng = np.random.default_rng(31)
    x = rng.standard_normal(fused.n_params)
    M = 700 * K
    for name in ("residuals", "jacobian"):
        _close(getattr(fused, name)(x, **data), getattr(array, name)(x, **data))
    v, u = rng.standard_normal(fused.n_params), rng.standard_normal(M)
    _close(fused.jvp(x, v, **data), array.jvp(x, v, **data))
    _close(fused.vjp(x, u, **data), array.vjp(x, u, **data))
    js, rs = rng.uniform(0.5, 2, M), rng.uniform(0.5, 2, M)
    for scales in ((None, None), (js, rs)):
        got, ref = fused.normal(x, *scales, **data), array.normal(x, *scales, **data)
        for a, b in zip(got, ref, strict=True):
            _close(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(fused.unpack(x)["W"], x[:K * D].reshape(K, D))
    np.testing.assert_array_equal(fused.pack(W=np.ones((K, D)), b=np.zeros(K)),
                                  np.r_[np.ones(K * D), np.zeros(K)])
    assert "one fused sample loop" in repr(fused) and "tanh" in fused.formulas()


@pytest.mark.slow  # -m slow (5-6 s of compile each, cold; the fused lstsq fit stays quick)
def test_fused_fit_equals_array_fit_with_x0_by_name(lowerings):
    fused, array, data = lowerings
    x0 = {"W": np.full((K, D), 0.1), "b": np.zeros(K)}
    a = sg.least_squares(fused, x0, data=data)
    b = sg.least_squares(array, x0, data=data)
    assert a.success and b.success
    np.testing.assert_allclose(a.x, b.x, rtol=1e-9, atol=1e-10)
    assert a.cost == pytest.approx(b.cost, rel=1e-12)
    np.testing.assert_allclose(a.cov, b.cov, rtol=1e-8, atol=1e-12)


def test_fuse_option_chooses_and_explains():
    W, b = sg.params("W", shape=(K, D)), sg.params("b", shape=(K,))
    X, Y = sg.data("X", shape=(D,)), sg.data("Y", shape=(K,))
    F = sg.data("F", shape=(K,), samples=False)  # a whole array: no one-sample unrolling
    whole = W @ X + F - Y
    with pytest.raises(ProblemError, match=r"fuse=True: .*'F' is a whole data array"):
        sg.compile_residuals(whole, fuse=True)
    auto = sg.compile_residuals(whole)
    assert not auto.fused
    with pytest.raises(TypeError, match="fuse must be None, True or False"):
        sg.compile_residuals(W @ X + b - Y, fuse="yes")
    a = sg.params("a")
    t = sg.data("t")
    with pytest.raises(ValueError, match="fuse=False chooses the array lowering"):
        sg.compile_residuals(a * t - t, fuse=False)
    assert sg.compile_residuals(a * t - t, fuse=True).m == 1


def test_fused_matrix_data_is_read_per_sample_and_checked():
    a = sg.params("a", shape=(2,))
    Z = sg.data("Z", shape=(2, 2))
    from symgrad.lang.ops import lift
    rk = sg.compile_residuals(sg.exp(Z * lift(a)) - 1.0, fuse=True)
    Zv = np.random.default_rng(32).standard_normal((6, 2, 2))
    x = np.array([0.5, -0.3])
    np.testing.assert_allclose(rk.residuals(x, Z=Zv), (np.exp(Zv * x) - 1).ravel(), rtol=1e-14)
    with pytest.raises(ValueError, match=r"data array 'Z' must have shape \(N, 2, 2\)"):
        rk.residuals(x, Z=Zv.reshape(6, 4))
    bad = Zv.copy()
    bad[4, 1, 0] = np.inf
    with pytest.raises(ValueError, match=r"data array 'Z' has a non-finite value \(inf\) at row 4"):
        rk.normal(x, Z=bad)


def test_least_squares_on_the_expression_fuses_and_equals_lstsq():
    """sg.least_squares(W @ X + b - Y) (3 outputs) by the default lowering: NumPy's lstsq.
    (The names and shapes of test_lsq_arrays's linear model: one cached module for both.)"""
    W, b = sg.params("W", shape=(3, 4)), sg.params("b", shape=(3,))
    X, Y = sg.data("X", shape=(4,)), sg.data("Y", shape=(3,))
    rng = np.random.default_rng(33)
    Xv = rng.standard_normal((400, 4))
    Yv = Xv @ rng.standard_normal((4, 3)) + rng.standard_normal(3) \
        + 0.1 * rng.standard_normal((400, 3))
    assert sg.lsq.as_kernel(W @ X + b - Y).fused
    fit = sg.least_squares(W @ X + b - Y, np.zeros(15), data={"X": Xv, "Y": Yv})
    coef = np.linalg.lstsq(np.hstack([Xv, np.ones((400, 1))]), Yv, rcond=None)[0]
    np.testing.assert_allclose(fit.x, np.concatenate([coef[:4].T.ravel(), coef[4]]),
                               rtol=0, atol=1e-9)


def test_a_residual_that_hides_a_nan_is_scanned_on_every_call():
    """Regression: min(r, 10) turns a NaN datum into 10, and an unbound residual call returned
    it as a finite residual (only bind() scanned); ArrayResiduals scanned such residuals on
    every call, as the fused array lowering must too."""
    import sympy as sp

    a, b = sg.params("a b")
    t, y = sg.data("t y")
    rk = sg.compile_residuals(sp.Min(a * t + b - y, 10.0))
    tt = np.array([1.0, 2.0, np.nan, 4.0])
    with pytest.raises(ValueError, match=r"'t' has a non-finite value \(nan\) at row 2"):
        rk.residuals([1.0, 0.0], t=tt, y=np.zeros(4))
    with pytest.raises(ValueError, match=r"'t' has a non-finite value \(nan\) at row 2"):
        rk.normal([1.0, 0.0], t=tt, y=np.zeros(4))
    np.testing.assert_array_equal(rk.residuals([1.0, 0.0], t=tt[:2], y=np.zeros(2)), [1.0, 2.0])


def _generated(tmp_path):
    W, b = sg.params("W", shape=(K, D)), sg.params("b", shape=(K,))
    X, Y = sg.data("X", shape=(D,)), sg.data("Y", shape=(K,))
    return sg.generate(sg.tanh(W @ X + b) - Y, tmp_path / "layer.py", kind="residual")


def test_generate_writes_an_array_residual_as_its_fused_module(lowerings, tmp_path):
    """sg.generate(kind="residual") on an array residual refused it ("must be a SymPy
    expression, got Map"); it writes the fused sample loop, the kernel's own module text."""
    fused = lowerings[0]
    path = _generated(tmp_path)

    def body(text: str) -> list[str]:  # all but the command in the header and its hash
        return [ln for ln in text.splitlines()
                if not ln.startswith(("# regenerate with:", "# content hash:"))]

    assert body(path.read_text()) == body(fused.source)
    W, X, Y = sg.params("W", shape=(K, D)), sg.data("X", shape=(D,)), sg.data("Y", shape=(K,))
    F = sg.data("F", shape=(K,), samples=False)
    with pytest.raises(ProblemError, match=r"does not fuse: 'F' is a whole data array"):
        sg.generate(W @ X + F - Y, tmp_path / "no.py", kind="residual")


@pytest.mark.slow  # Numba compiles the written module's normal pass (~7 s on a loaded machine)
def test_the_generated_array_residual_module_gives_the_kernel_numbers(lowerings, tmp_path):
    from symgrad.build.cache import load_module

    fused, _, data = lowerings
    mod = load_module(_generated(tmp_path))
    assert fused.params == mod.PARAMS and mod.DATA == ("X", "Y") and mod.M_PER_SAMPLE == K
    x = np.random.default_rng(34).standard_normal(fused.n_params)
    A, g = np.empty((fused.n_params,) * 2), np.empty(fused.n_params)
    rtr = mod.normal(x, A, g, None, None, data["X"], data["Y"])
    A0, g0, rtr0 = fused.normal(x, **data)
    _close(A, A0, 1e-14)  # one text; two Numba compiles may round the sums differently
    _close(g, g0, 1e-14)
    assert rtr == pytest.approx(rtr0, rel=1e-14)


@pytest.mark.slow  # two kernels of their own, compiled cold (~6 s on a loaded machine)
def test_params_order_packs_x_alike_in_both_lowerings():
    W, b = sg.params("W", shape=(2, 2)), sg.params("b", shape=(2,))
    X, Y = sg.data("X", shape=(2,)), sg.data("Y", shape=(2,))
    f = sg.compile_residuals(W @ X + b - Y, ["b", "W"], fuse=True)
    a = sg.compile_residuals(W @ X + b - Y, ["b", "W"], fuse=False)
    assert f.params == a.params == ("b[0]", "b[1]", "W[0, 0]", "W[0, 1]", "W[1, 0]", "W[1, 1]")
    rng = np.random.default_rng(35)
    data = {"X": rng.standard_normal((9, 2)), "Y": rng.standard_normal((9, 2))}
    x = rng.standard_normal(6)
    np.testing.assert_allclose(f.jacobian(x, **data), a.jacobian(x, **data), rtol=1e-15)
