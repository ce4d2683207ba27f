"""symgrad.lang.losses against closed-form NumPy oracles on the seed data, and a small network's
gradient against independent central differences."""

from __future__ import annotations

import doctest
import types

import numpy as np
import pytest
import sympy as sp

import symgrad as sg
from symgrad.lang import losses

RTOL = 1e-12


# -- the seed scenario: speed of a roller coaster over 20 time steps --------------------------
@pytest.fixture(scope="module")
def seed():
    rng = np.random.default_rng(20230914)
    time = np.arange(20).astype(np.float64)
    speed = rng.normal(size=20) + 0.5 * (time - 9.5) ** 2 + 1
    return time, speed


@pytest.fixture(scope="module")
def quad():
    a, b, c = sg.params("a b c")
    t, y = sg.data("t y")
    return (a, b, c), t, y, a * t**2 + b * t + c


@pytest.fixture(scope="module")
def f_mse(quad):
    _, _t, y, pred = quad
    return sg.compile(losses.mse(pred, y))


def _design(t):
    return np.stack([t**2, t, np.ones_like(t)], axis=1)


# points away from the optimum (and, for mae, with no residual near 0)
POINTS = [np.array([0.3, -4.0, 12.0]), np.array([-0.2, 1.5, -3.0]), np.array([0.7, -9.1, 40.0])]


@pytest.mark.parametrize("p", POINTS)
def test_mse_value_grad_closed_form(f_mse, seed, p):
    t, y = seed
    X = _design(t)
    r = X @ p - y
    val, g = f_mse.value_and_grad(p, t=t, y=y)
    np.testing.assert_allclose(val, np.mean(r**2), rtol=RTOL)
    np.testing.assert_allclose(g, 2.0 / len(t) * X.T @ r, rtol=RTOL)
    np.testing.assert_allclose(f_mse.value(p, t=t, y=y), np.mean(r**2), rtol=RTOL)
    np.testing.assert_allclose(f_mse.grad(p, t=t, y=y), 2.0 / len(t) * X.T @ r, rtol=RTOL)


@pytest.mark.parametrize("p", POINTS)
def test_mse_hessian_and_hvp_closed_form(f_mse, seed, p):
    t, y = seed
    X = _design(t)
    H = 2.0 / len(t) * X.T @ X
    np.testing.assert_allclose(f_mse.hessian(p, t=t, y=y), H, rtol=RTOL)
    v = np.array([0.5, -1.0, 2.0])
    np.testing.assert_allclose(f_mse.hvp(p, v, t=t, y=y), H @ v, rtol=RTOL)


def test_rmse_closed_form(quad, seed):
    _, _t, y, pred = quad
    f = sg.compile(losses.rmse(pred, y))
    ts, ys = seed
    X = _design(ts)
    for p in POINTS:
        r = X @ p - ys
        rm = np.sqrt(np.mean(r**2))
        val, g = f.value_and_grad(p, t=ts, y=ys)
        np.testing.assert_allclose(val, rm, rtol=RTOL)
        np.testing.assert_allclose(g, X.T @ r / (len(ts) * rm), rtol=RTOL)


def test_mae_closed_form_away_from_kinks(quad, seed):
    _, _t, y, pred = quad
    f = sg.compile(losses.mae(pred, y))
    assert not f.analytic
    ts, ys = seed
    X = _design(ts)
    for p in POINTS:
        r = X @ p - ys
        assert np.min(np.abs(r)) > 1e-3, "test point too close to a kink"
        val, g = f.value_and_grad(p, t=ts, y=ys)
        np.testing.assert_allclose(val, np.mean(np.abs(r)), rtol=RTOL)
        np.testing.assert_allclose(g, X.T @ np.sign(r) / len(ts), rtol=RTOL)


def test_mean_plus_l2(quad, seed):
    (a, b, c), _t, y, pred = quad
    w = 1e-2
    f = sg.compile(losses.mse(pred, y) + losses.l2(a, b, c, weight=w))
    ts, ys = seed
    X = _design(ts)
    for p in POINTS:
        r = X @ p - ys
        val, g = f.value_and_grad(p, t=ts, y=ys)
        np.testing.assert_allclose(val, np.mean(r**2) + w * p @ p, rtol=RTOL)
        np.testing.assert_allclose(g, 2.0 / len(ts) * X.T @ r + 2 * w * p, rtol=RTOL)
    H = 2.0 / len(ts) * X.T @ X + 2 * w * np.eye(3)
    np.testing.assert_allclose(f.hessian(POINTS[0], t=ts, y=ys), H, rtol=RTOL)


# -- classification losses and huber against NumPy oracles ------------------------------------
def _logsumexp(z):
    m = z.max(axis=1, keepdims=True)
    return (m + np.log(np.exp(z - m).sum(axis=1, keepdims=True)))[:, 0]


def _linear_logits(form: str):
    """``W x`` per sample, W of shape (3, 2): one array (``W @ x``) or unrolled by hand into six
    scalar parameters (the scalar path, packed row-major like the array)."""
    if form == "array":
        W, x = sg.params("W", shape=(3, 2)), sg.data("x", shape=(2,))
        return W @ x, [W]
    Ws = sp.Matrix(3, 2, lambda i, j: sg.params(f"W_{i}{j}"))
    xs = sp.Matrix(sg.data("x_0 x_1"))
    return list(Ws * xs), list(Ws)


@pytest.mark.parametrize("form", ["array", pytest.param("unrolled", marks=pytest.mark.slow)])
def test_cross_entropy_linear_softmax(form):
    rng = np.random.default_rng(5)
    logits, params = _linear_logits(form)
    if form == "array":
        f = sg.compile(losses.cross_entropy(logits, sg.data("y", shape=(3,))), params)
        assert f.params == ("W",) and f.shapes == {"W": (3, 2)}
    else:
        f = sg.compile(losses.cross_entropy(logits, list(sg.data("y_0 y_1 y_2"))), params)
        assert f.analytic
    X = rng.normal(size=(50, 2))
    Y = np.eye(3)[rng.integers(0, 3, 50)]
    data = ({"x": X, "y": Y} if form == "array" else
            {"x_0": X[:, 0], "x_1": X[:, 1], "y_0": Y[:, 0], "y_1": Y[:, 1], "y_2": Y[:, 2]})
    for scale in (1.0, 300.0):  # 300: logits ~ 1e3, where a naive exp overflows
        p = scale * rng.normal(size=6)
        Wm = p.reshape(3, 2)
        z = X @ Wm.T
        lse = _logsumexp(z)
        ce = np.mean(lse - (Y * z).sum(axis=1))
        soft = np.exp(z - lse[:, None])
        gW = (soft - Y).T @ X / len(X)
        val, g = f.value_and_grad(p, **data)
        assert np.isfinite(val)
        np.testing.assert_allclose(val, ce, rtol=1e-11)
        np.testing.assert_allclose(g, gW.ravel(), rtol=1e-10, atol=1e-12 * np.abs(gW).max())


def test_binary_cross_entropy_stable():
    rng = np.random.default_rng(6)
    w, b = sg.params("w b")
    u, y = sg.data("u y")
    f = sg.compile(losses.binary_cross_entropy(w * u + b, y))
    X = rng.normal(size=40)
    Y = (rng.random(40) < 0.5).astype(float)
    # p in f.params order (never assume it: symbols are shared process-wide by name)
    for pw, pb in ((0.8, -0.3), (900.0, 5.0)):  # huge logits: no overflow
        p = np.array([{"w": pw, "b": pb}[n] for n in f.params])
        z = pw * X + pb
        bce = np.mean(np.logaddexp(0.0, z) - Y * z)
        s = 0.5 * (1 + np.tanh(z / 2))  # stable sigmoid
        g = np.array([{"w": np.mean((s - Y) * X), "b": np.mean(s - Y)}[n] for n in f.params])
        val, gk = f.value_and_grad(p, u=X, y=Y)
        np.testing.assert_allclose(val, bce, rtol=1e-12)
        np.testing.assert_allclose(gk, g, rtol=1e-11)


def test_huber_three_regions():
    a = sg.params("a")
    t, y = sg.data("t y")
    delta = 1.5
    f = sg.compile(losses.huber(a * t, y, delta=delta))
    ts = np.linspace(-3, 3, 31)
    ys = np.sin(ts)
    for p in (np.array([0.25]), np.array([2.0]), np.array([-1.7])):
        r = p[0] * ts - ys
        assert np.min(np.abs(np.abs(r) - delta)) > 1e-6
        quad = np.abs(r) <= delta
        h = np.where(quad, 0.5 * r**2, delta * (np.abs(r) - 0.5 * delta))
        dh = np.where(quad, r, delta * np.sign(r))
        val, g = f.value_and_grad(p, t=ts, y=ys)
        np.testing.assert_allclose(val, h.mean(), rtol=RTOL)
        np.testing.assert_allclose(g, [np.mean(dh * ts)], rtol=RTOL)


def test_vector_mse_averages_over_components():
    W = sg.params("W", shape=(2, 2))
    x, y = sg.data("x", shape=(2,)), sg.data("y", shape=(2,))
    f = sg.compile(losses.mse(W @ x, y))
    rng = np.random.default_rng(7)
    X, Y = rng.normal(size=(30, 2)), rng.normal(size=(30, 2))
    p = rng.normal(size=4)
    R = X @ p.reshape(2, 2).T - Y
    val, g = f.value_and_grad(p, x=X, y=Y)
    np.testing.assert_allclose(val, np.mean(R**2), rtol=RTOL)
    np.testing.assert_allclose(g, (2 * R.T @ X / R.size).ravel(), rtol=RTOL)


# -- a two-layer network: gradient against central differences -------------------------------
N_NET = 64


@pytest.fixture(scope="module")
def net():
    W1 = sg.params("W1", shape=(8, 2))
    b1 = sg.params("b1", shape=(8,))
    W2 = sg.params("W2", shape=(3, 8))
    b2 = sg.params("b2", shape=(3,))
    x = sg.data("x", shape=(2,))
    y = sg.data("y", shape=(3,))
    hidden = sg.relu(W1 @ x + b1)
    loss = losses.cross_entropy(W2 @ hidden + b2, y) + losses.l2(W1, W2, weight=1e-3)
    f = sg.compile(loss, params=[W1, b1, W2, b2])
    rng = np.random.default_rng(11)
    X = rng.normal(size=(N_NET, 2))
    Y = np.eye(3)[rng.integers(0, 3, N_NET)]
    return f, X, Y


def _unpack(p):
    """The documented packing: W1, b1, W2, b2 in f.params order, each flattened row-major."""
    return p[:16].reshape(8, 2), p[16:24], p[24:48].reshape(3, 8), p[48:51]


def _net_numpy(p, X, Y):
    """Independent forward pass (the oracle for the value)."""
    W1, b1, W2, b2 = _unpack(p)
    pre = X @ W1.T + b1
    z = np.maximum(pre, 0.0) @ W2.T + b2
    ce = np.mean(_logsumexp(z) - (Y * z).sum(axis=1))
    return ce + 1e-3 * (np.sum(W1**2) + np.sum(W2**2)), pre


H_FD = 1e-6


def _central_diff(fun, p, h=H_FD):
    g = np.empty_like(p)
    for k in range(p.size):
        e = np.zeros_like(p)
        e[k] = h * max(1.0, abs(p[k]))
        g[k] = (fun(p + e) - fun(p - e)) / (2 * e[k])
    return g


def test_network_layout(net):
    f, _, _ = net
    assert f.n_params == 51
    assert f.params == ("W1", "b1", "W2", "b2")
    assert f.shapes == {"W1": (8, 2), "b1": (8,), "W2": (3, 8), "b2": (3,)}
    assert f.data_names == ("x", "y")
    assert not f.analytic
    p = np.arange(51.0)
    views = f.unpack(p)
    for name, want in zip(f.params, _unpack(p), strict=True):
        np.testing.assert_array_equal(views[name], want)
    views["b2"][2] = -1.0  # views write through to x
    assert p[50] == -1.0
    np.testing.assert_array_equal(f.pack(**dict(zip(f.params, _unpack(p), strict=True))), p)


def _flat_names(f):
    """One name per entry of x, e.g. 'W1[0, 1]' (for failure messages)."""
    return [f"{n}{list(i)}" for n in f.params for i in np.ndindex(*f.shapes[n])]


# -m slow (a network kernel: 5 s of compile, cold; the quick set keeps the array form)
@pytest.mark.slow
@pytest.mark.parametrize("seed_", [0, 1, 2])
def test_network_gradient_central_differences(net, seed_):
    f, X, Y = net
    # (x is positional-only in ArrayKernel calls, so a data array named 'x' passes as x=...)
    fb = types.SimpleNamespace(value=lambda q: f.value(q, x=X, y=Y),
                               value_and_grad=lambda q: f.value_and_grad(q, x=X, y=Y))
    p = np.random.default_rng(100 + seed_).normal(size=51)
    val_np, pre = _net_numpy(p, X, Y)
    # away from relu kinks: every pre-activation is further from 0 than a step can move it
    # (a step h*max(1, |p_k|) in W1 or b1 moves a pre-activation by at most that times max(1, |x|))
    reach = H_FD * max(1.0, np.abs(p).max()) * max(1.0, np.abs(X).max())
    assert np.min(np.abs(pre)) > 2 * reach, "choose another seed: a pre-activation is at a kink"
    np.testing.assert_allclose(fb.value(p), val_np, rtol=1e-12)
    g_fd = _central_diff(lambda q: _net_numpy(q, X, Y)[0], p)
    val, g = fb.value_and_grad(p)
    np.testing.assert_allclose(val, val_np, rtol=1e-12)
    err = np.abs(g - g_fd) / np.maximum(np.abs(g), 1e-6)
    assert err.max() < 1e-6, f"worst {_flat_names(f)[err.argmax()]}: {g[err.argmax()]} vs " \
        f"{g_fd[err.argmax()]}"
    # and against central differences of the kernel's own value
    g_fd_k = _central_diff(fb.value, p)
    np.testing.assert_allclose(g, g_fd_k, rtol=1e-6, atol=1e-9)


@pytest.mark.slow  # -m slow (a network kernel: 8 s of compile, cold)
def test_network_bound_kernel_matches(net):
    f, X, Y = net
    p = np.random.default_rng(7).normal(size=51)
    fb = f.bind(x=X, y=Y)
    val, g = f.value_and_grad(p, x=X, y=Y)
    np.testing.assert_allclose(fb.value(p), val, rtol=RTOL)
    np.testing.assert_allclose(fb.grad(p), g, rtol=RTOL)


# -- argument checking ------------------------------------------------------------------------
def test_loss_argument_errors():
    a, b = sg.params("a b")
    t, y = sg.data("t y")
    v = list(sg.data("v_0 v_1"))  # two one-hot components, scalar path
    with pytest.raises(ValueError, match="pred has 2 components but target has 1"):
        losses.mse([a * t, b * t], y)
    with pytest.raises(ValueError, match="3 logits but onehot has 2"):
        losses.cross_entropy([a, b, a * b], v)
    with pytest.raises(ValueError, match="at least two classes"):
        losses.cross_entropy([a * t], [y])
    with pytest.raises(ValueError, match="delta must be positive"):
        losses.huber(a * t, y, delta=0)
    with pytest.raises(TypeError, match="contains a data column"):
        losses.l2(a * t)
    with pytest.raises(TypeError, match="takes parameters"):
        losses.l2(sp.Integer(3))
    with pytest.raises(ValueError, match="at least one parameter"):
        losses.l2(weight=2.0)
    with pytest.raises(TypeError, match="must be a SymPy expression"):
        losses.mse(object(), y)
    with pytest.raises(TypeError, match="column Matrix"):
        losses.mse(sp.Matrix(2, 2, lambda i, j: sg.params(f"M_{i}{j}")), y)


def test_array_loss_shape_errors():
    W = sg.params("W", shape=(3, 2))
    x, y2 = sg.data("x", shape=(2,)), sg.data("y2", shape=(2,))
    with pytest.raises(ValueError, match=r"\(2,\) and \(3,\) do not broadcast: size 3 against 2"):
        losses.cross_entropy(W @ x, y2)
    with pytest.raises(ValueError, match=r"\(3,\) and \(2,\) do not broadcast"):
        losses.mse(W @ x, y2)
    with pytest.raises(ValueError, match=r"last axis of the left \(2\) does not match"):
        losses.mse(W @ y2, W @ sg.data("x3", shape=(3,)))


def test_l2_matrix_and_weight():
    """The scalar path: a Matrix of parameters (unrolled by hand) adds its squared entries."""
    a = sg.params("a")
    W = sp.Matrix(2, 2, lambda i, j: sg.params(f"W_{i}{j}"))
    e = losses.l2(a, W, weight=0.25)
    vals = {s: k + 1.0 for k, s in enumerate([a, *W])}
    assert float(e.subs(vals)) == pytest.approx(0.25 * (1 + 4 + 9 + 16 + 25))


def test_l2_array_and_weight():
    a = sg.params("a")
    W = sg.params("W", shape=(2, 2))
    f = sg.compile(losses.l2(a, W, weight=0.25), [a, W])
    assert f.params == ("a", "W") and f.n_params == 5
    x = f.pack(a=1.0, W=[[2.0, 3.0], [4.0, 5.0]])
    val, g = f.value_and_grad(x)
    assert val == pytest.approx(0.25 * (1 + 4 + 9 + 16 + 25), rel=RTOL)
    np.testing.assert_allclose(g, 0.5 * x, rtol=RTOL)
    np.testing.assert_allclose(f.hessian(x), 0.5 * np.eye(5), rtol=RTOL)


def test_doctests():
    res = doctest.testmod(losses)
    assert res.attempted > 0 and res.failed == 0
