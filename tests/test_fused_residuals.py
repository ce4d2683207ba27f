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
