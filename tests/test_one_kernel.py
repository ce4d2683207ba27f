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
        "array": (sg.compile(sg.mean((X @ w - y) ** 2), fuse=False), dict(X=Xa, y=Y)),
        "fused": (sg.compile(sg.mean((X @ w - y) ** 2)), dict(X=Xa, y=Y)),
        "residual": (sg.compile_residuals(a * t + b - y), dict(t=T, y=Y)),
    }


@pytest.mark.parametrize("kind", ["scalar", "array", "fused", "residual"])
@pytest.mark.parametrize("bound", [False, True])
def test_every_kind_has_the_one_interface(kernels, kind, bound):
    f, data = kernels[kind]
    k = f.bind(**data) if bound else f
    assert isinstance(f, sg.Kernel) and is_kernel(k) and isinstance(k, LossKernel)
    for m in MEMBERS:
        assert hasattr(k, m), f"{kind} kernel (bound={bound}) lacks {m}"
    assert k.kind == {"fused": "scalar"}.get(kind, kind) and k.n_params == 2 and len(k.labels) == 2
    x = np.array([0.7, -0.2])
    assert np.array_equal(k.pack(**k.unpack(x)), x)
    call = (lambda name, *a: getattr(k, name)(*a)) if bound else \
        (lambda name, *a: getattr(k, name)(*a, **data))
    v, g = call("value_and_grad", x)
    # value and value_and_grad are separate loops whose sums the compiler may vectorise
    # differently (one ulp apart on an AMD EPYC): equal to rounding, not always to the bit
    assert v == pytest.approx(call("value", x), rel=1e-14)
    assert np.array_equal(g, call("grad", x))
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
    # the same loss as a scalar loss: ½ Σ r² is N/2 times the fixture's mean((a t + b - y)²)
    # (already compiled: no module of its own), with the same value and gradient
    f, fdata = kernels["scalar"]
    assert fdata["t"] is data["t"] and fdata["y"] is data["y"]
    half_n = T.size / 2
    assert rk.value(x, **data) == pytest.approx(half_n * f.value(x, **data), rel=1e-13)
    np.testing.assert_allclose(rk.grad(x, **data), half_n * f.grad(x, **data), rtol=1e-12)
    # linear residuals: the Gauss–Newton Hessian is the Hessian
    np.testing.assert_allclose(rk.hessian(x, **data), half_n * f.hessian(x, **data),
                               rtol=1e-12)


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


@pytest.mark.parametrize("kind", ["scalar", "array", "fused", "residual"])
def test_bound_refuses_out_aliasing_x_and_names_a_nan_row(kernels, kind):
    f, data = kernels[kind]
    col = "X" if kind in ("array", "fused") else "t"
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


@pytest.mark.parametrize("kind", ["array", "fused"])
def test_labels_of_array_kernel_name_each_entry(kernels, kind):
    f, _ = kernels[kind]
    assert f.labels == ("w[0]", "w[1]") and f.params == ("w",)
    assert f.shapes == {"w": (2,)}


# -- array residuals (W @ X + b - Y per sample) are the same ResidualKernel ---------------------
XA = RNG.normal(size=(40, 3))
YA = RNG.normal(size=(40, 2))


@pytest.fixture(scope="module")
def array_residuals():
    W = sg.params("W", shape=(2, 3))
    b = sg.params("b", shape=(2,))
    X, Yd = sg.data("X", shape=(3,)), sg.data("Y", shape=(2,))
    rk = sg.lsq.as_kernel(W @ X + b - Yd)
    # block=7: several blocks (and a short last one) in every block pass
    return sg.lsq.ArrayResiduals(rk.model, block=7), dict(X=XA, Y=YA)


def _numpy_residuals(x):
    W, b = x[:6].reshape(2, 3), x[6:]
    r = (XA @ W.T + b - YA).ravel()
    J = np.zeros((40, 2, 8))
    for k in range(2):
        J[:, k, 3 * k:3 * k + 3] = XA
        J[:, k, 6 + k] = 1.0
    return r, J.reshape(80, 8)


@pytest.mark.parametrize("bound", [False, True])
def test_array_residuals_have_the_one_interface(array_residuals, bound):
    rk, data = array_residuals
    assert isinstance(rk, sg.ResidualKernel) and isinstance(rk, sg.Kernel)
    k = rk.bind(**data) if bound else rk
    if bound:
        assert type(k) is sg.BoundResiduals and k.n_samples == 40 and k.n_residuals() == 80
        assert [c.shape for c in k.cols] == [(40, 3), (40, 2)]  # the data, in data_names order
    assert is_kernel(k) and isinstance(k, LossKernel) and k.kind == "residual"
    for m in (*MEMBERS, "residuals", "jacobian", "jvp", "vjp", "normal", "rows"):
        assert hasattr(k, m), f"array residuals (bound={bound}) lack {m}"
    assert k.n_params == 8 and k.labels[0] == "W[0, 0]" and k.labels[-1] == "b[1]"
    x = RNG.normal(size=8)
    assert np.array_equal(k.pack(**k.unpack(x)), x)
    assert "W" in k.formulas()


def test_array_residuals_bound_and_unbound_agree_bitwise(array_residuals):
    rk, data = array_residuals
    fb = rk.bind(**data)
    x, v = RNG.normal(size=8), RNG.normal(size=8)
    assert fb.value(x) == rk.value(x, **data)
    assert np.array_equal(fb.grad(x), rk.grad(x, **data))
    assert np.array_equal(fb.hvp(x, v), rk.hvp(x, v, **data))
    assert np.array_equal(fb.hessian(x), rk.hessian(x, **data))
    assert np.array_equal(fb.residuals(x), rk.residuals(x, **data))
    assert np.array_equal(fb.jacobian(x), rk.jacobian(x, **data))
    for a, b in zip(fb.normal(x), rk.normal(x, **data), strict=True):
        assert np.array_equal(a, b)


def test_array_residuals_are_the_half_squared_norm_loss(array_residuals):
    rk, data = array_residuals
    x, v = RNG.normal(size=8), RNG.normal(size=8)
    r, J = _numpy_residuals(x)
    np.testing.assert_allclose(rk.residuals(x, **data), r, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(rk.jacobian(x, **data), J, rtol=0, atol=0)
    assert rk.value(x, **data) == pytest.approx(0.5 * r @ r, rel=1e-13)
    val, g = rk.value_and_grad(x, **data)
    assert val == rk.value(x, **data)
    np.testing.assert_allclose(g, J.T @ r, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(rk.hvp(x, v, **data), J.T @ (J @ v), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(rk.hessian(x, **data), J.T @ J, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(rk.jvp(x, v, **data), J @ v, rtol=1e-12, atol=1e-12)
    u = RNG.normal(size=80)
    np.testing.assert_allclose(rk.vjp(x, u, **data), J.T @ u, rtol=1e-12, atol=1e-12)
    JtJ, Jtr, rtr = rk.normal(x, **data)
    np.testing.assert_allclose(JtJ, J.T @ J, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(Jtr, J.T @ r, rtol=1e-12, atol=1e-12)
    assert rtr == pytest.approx(r @ r, rel=1e-13)
    Jr, rr = rk.rows(x, 5, 19, **data)
    np.testing.assert_allclose(Jr, J[10:38], rtol=0, atol=0)
    np.testing.assert_allclose(rr, r[10:38], rtol=1e-13, atol=1e-13)


def test_array_residuals_take_a_batch(array_residuals):
    rk, data = array_residuals
    x = RNG.normal(size=8)
    idx = np.array([3, 17, 11])
    full = rk.residuals(x, **data).reshape(40, 2)
    np.testing.assert_array_equal(rk.residuals(x, batch=idx, **data), full[idx].ravel())
    assert rk.n_residuals(batch=slice(0, 5), **data) == 10
    assert rk.value(x, batch=slice(0, 5), **data) == pytest.approx(
        0.5 * np.sum(full[:5] ** 2), rel=1e-14)


def test_check_grad_takes_array_residuals(array_residuals):
    rk, data = array_residuals
    x = RNG.normal(size=8)
    assert sg.check_grad(rk, x, data=data).ok
    assert sg.check_grad(rk.bind(**data), x).ok
    exact = sg.check_grad(rk, x, data=data, method="exact")  # unrolled from the array graph
    assert exact.ok


def test_array_residuals_name_a_nan_row_bound_or_not(array_residuals):
    rk, data = array_residuals
    bad = {k: v.copy() for k, v in data.items()}
    fb = rk.bind(**bad)
    bad["X"][6, 1] = np.nan  # written into the bound array after bind: still named
    x = RNG.normal(size=8)
    with pytest.raises(ValueError, match=r"'X'.*row 6"):
        fb.grad(x)
    with pytest.raises(ValueError, match=r"'X'.*row 6"):
        rk.normal(x, **bad)
