"""One kernel interface (issue 21): every kind has the same members, bound or not; a residual
kernel is also the loss ½‖r‖² (gradient Jᵀr, Gauss–Newton HVP and Hessian)."""

from __future__ import annotations

import numpy as np
import pytest

import symgrad as sg
from symgrad.runtime.bound import LossKernel, is_kernel

MEMBERS = ("kind", "params", "n_params", "labels", "shapes", "value", "value_and_grad", "grad",
           "hvp", "hessian", "pack", "unpack", "formulas")

RNG = np.random.default_rng(21)
T = RNG.normal(size=40)
Y = 2.0 * T - 0.5 + 0.1 * RNG.normal(size=40)


@pytest.fixture(scope="module")
def kernels():
    a, b = sg.params("a b")
    t, y = sg.data("t y")
    w = sg.params("w", shape=(2,))
    X = sg.data("X", shape=(2,))
    Xa = np.column_stack([T, np.ones_like(T)])
    return {
        "scalar": (sg.compile(sg.mean((a * t + b - y) ** 2)), dict(t=T, y=Y)),
        "array": (sg.compile(sg.mean((X @ w - y) ** 2)), dict(X=Xa, y=Y)),
        "residual": (sg.compile_residuals(a * t + b - y), dict(t=T, y=Y)),
    }


@pytest.mark.parametrize("kind", ["scalar", "array", "residual"])
@pytest.mark.parametrize("bound", [False, True])
def test_every_kind_has_the_one_interface(kernels, kind, bound):
    f, data = kernels[kind]
    k = f.bind(**data) if bound else f
    assert isinstance(f, sg.Kernel) and is_kernel(k) and isinstance(k, LossKernel)
    for m in MEMBERS:
        assert hasattr(k, m), f"{kind} kernel (bound={bound}) lacks {m}"
    assert k.kind == kind and k.n_params == 2 and len(k.labels) == 2
    x = np.array([0.7, -0.2])
    assert np.array_equal(k.pack(**k.unpack(x)), x)
    call = (lambda name, *a: getattr(k, name)(*a)) if bound else \
        (lambda name, *a: getattr(k, name)(*a, **data))
    v, g = call("value_and_grad", x)
    assert v == call("value", x) and np.array_equal(g, call("grad", x))
    H = call("hessian", x)
    assert np.allclose(call("hvp", x, np.array([1.0, 0.0])), H[:, 0], rtol=1e-12, atol=1e-12)
    assert "=" in k.formulas()


def test_bound_and_unbound_agree_bitwise(kernels):
    x = np.array([0.3, 0.9])
    for kind, (f, data) in kernels.items():
        fb = f.bind(**data)
        assert fb.value(x) == f.value(x, **data), kind
        assert np.array_equal(fb.grad(x), f.grad(x, **data)), kind
        assert np.array_equal(fb.hessian(x), f.hessian(x, **data)), kind


def test_residual_kernel_is_the_half_squared_norm_loss(kernels):
    rk, data = kernels["residual"]
    x = np.array([1.5, 0.25])
    r = rk.residuals(x, **data)
    J = rk.jacobian(x, **data)
    assert rk.value(x, **data) == pytest.approx(0.5 * r @ r, rel=1e-14)
    np.testing.assert_allclose(rk.grad(x, **data), J.T @ r, rtol=1e-12)
    v = np.array([0.3, -1.1])
    np.testing.assert_allclose(rk.hvp(x, v, **data), J.T @ (J @ v), rtol=1e-12)
    np.testing.assert_allclose(rk.hessian(x, **data), J.T @ J, rtol=1e-12)
    # the same loss compiled as a scalar loss: ½ Σ r² has the same value and gradient
    a, b = sg.params("a b")
    t, y = sg.data("t y")
    f = sg.compile(sg.sum((a * t + b - y) ** 2) / 2)
    assert rk.value(x, **data) == pytest.approx(f.value(x, **data), rel=1e-13)
    np.testing.assert_allclose(rk.grad(x, **data), f.grad(x, **data), rtol=1e-12)
    # linear residuals: the Gauss–Newton Hessian is the Hessian
    np.testing.assert_allclose(rk.hessian(x, **data), f.hessian(x, **data), rtol=1e-12)


def test_residual_kernel_takes_a_batch(kernels):
    rk, data = kernels["residual"]
    x = np.array([1.0, 0.0])
    idx = np.array([3, 7, 11])
    r = rk.residuals(x, batch=idx, **data)
    np.testing.assert_array_equal(r, rk.residuals(x, **data)[idx])
    assert rk.n_residuals(batch=slice(0, 5), **data) == 5
    assert rk.value(x, batch=slice(0, 5), **data) == pytest.approx(
        0.5 * np.sum(rk.residuals(x, **data)[:5] ** 2), rel=1e-14)


def test_check_grad_takes_a_residual_kernel(kernels):
    rk, data = kernels["residual"]
    res = sg.check_grad(rk, np.array([0.4, -0.3]), data=data)
    assert res.ok
    assert sg.check_grad(rk.bind(**data), np.array([0.4, -0.3])).ok


@pytest.mark.parametrize("kind", ["scalar", "array", "residual"])
def test_bound_refuses_out_aliasing_x_and_names_a_nan_row(kernels, kind):
    f, data = kernels[kind]
    col = "t" if kind != "array" else "X"
    bad = {k: v.copy() for k, v in data.items()}
    fb = f.bind(**bad)
    x = np.array([0.5, 0.5])
    with pytest.raises(ValueError, match="overlaps x"):
        fb.value_and_grad(x, out=x)
    bad[col][5] = np.nan  # written into the bound array after bind: still named
    with pytest.raises(ValueError, match=f"'{col}'.*row 5"):
        fb.grad(x)


def test_scalar_pack_with_call_time_vectors():
    lam = sg.params("lam")
    x = sg.params("x", indexed=True)
    i = sg.index("i")
    f = sg.compile(lam**2 + sg.sum(lam * (x[i + 1] - x[i]) ** 2, (i, 0, x.length - 1)))
    assert f.n_params is None and f.shapes == {"lam": (), "x": (None,)}
    z = f.pack(lam=2.0, x=[1.0, 2.0, 4.0])
    np.testing.assert_array_equal(z, [2.0, 1.0, 2.0, 4.0])
    parts = f.unpack(z)
    assert parts["lam"].shape == () and parts["x"].tolist() == [1.0, 2.0, 4.0]
    assert f.labels == ("lam", "x[:]") and f.param_names(4) == ("lam", "x[0]", "x[1]", "x[2]")
    with pytest.raises(ValueError, match="vector"):
        f.pack(lam=1.0, x=np.ones((2, 2)))


def test_labels_of_array_kernel_name_each_entry(kernels):
    f, _ = kernels["array"]
    assert f.labels == ("w[0]", "w[1]")
    assert f.shapes == {"w": (2,)}
