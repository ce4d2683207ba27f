"""check_grad(method="exact") on losses with data, array losses and residual kernels.

The oracle unrolls the loss over the (small) data into one SymPy expression, differentiates it
with ``sympy.diff`` and evaluates at 50 digits; here it is compared with hand-written NumPy
gradients, and a deliberately wrong gradient must be caught.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import sympy

import symgrad as sg
from symgrad import check_grad, check_hessian
from symgrad.check.exact import _exact_grad, _exact_hessian
from symgrad.check.unroll import ExactTooLarge, exact_loss

RTOL = 1e-12


class Perturbed:
    """A kernel whose gradient is off by ``eps`` in component ``i`` (everything else delegated)."""

    def __init__(self, k: Any, i: int = 0, eps: float = 1e-6) -> None:
        self._k, self._i, self._eps = k, i, eps

    def __getattr__(self, name: str) -> Any:
        return getattr(self._k, name)

    def grad(self, x, **data):
        g = np.array(self._k.grad(x, **data), dtype=float)
        g[self._i] += self._eps * max(1.0, abs(g[self._i]))
        return g


class ResidualLoss:
    """½‖r‖² and Jᵀr of a residual kernel (what the lead's residual ``value``/``grad`` compute)."""

    kind = "residual"

    def __init__(self, rk: Any) -> None:
        self.rk, self.problem, self.params = rk, rk.problem, rk.params

    def value(self, x, **data) -> float:
        r = self.rk.residuals(x, **data)
        return 0.5 * float(r @ r)

    def grad(self, x, **data) -> np.ndarray:
        return self.rk.jacobian(x, **data).T @ self.rk.residuals(x, **data)

    def hessian(self, x, **data) -> np.ndarray:  # Gauss-Newton
        J = self.rk.jacobian(x, **data)
        return J.T @ J

    def hvp(self, x, v, **data) -> np.ndarray:
        J = self.rk.jacobian(x, **data)
        return J.T @ (J @ v)


def _close(a, b, rtol=RTOL) -> None:
    np.testing.assert_allclose(a, b, rtol=rtol, atol=1e-14 * max(1.0, float(np.max(np.abs(b)))))


# -- scalar losses with data -------------------------------------------------------------------

@pytest.fixture(scope="module")
def decay():
    a, b = sg.params("a b")
    t, y = sg.data("t y")
    f = sg.compile(sg.mean((a * sg.exp(-b * t) - y) ** 2) + 0.1 * a**2)
    rng = np.random.default_rng(3)
    data = {"t": rng.uniform(0, 2, 7), "y": rng.normal(size=7)}
    return f, data


def _decay_grad(x, t, y) -> np.ndarray:
    a, b = x
    e = np.exp(-b * t)
    r = a * e - y
    return np.array([np.mean(2 * r * e) + 0.2 * a, np.mean(2 * r * a * e * -t)])


def test_scalar_loss_with_data_against_numpy(decay) -> None:
    f, data = decay
    x = np.array([0.8, 0.6])
    _close(_exact_grad(f, x, data), _decay_grad(x, **data))
    chk = check_grad(f, x, data, method="exact")
    assert chk.ok and chk.max_rel_err < 1e-13


def test_scalar_loss_with_data_honours_batch(decay) -> None:
    f, data = decay
    x = np.array([0.8, 0.6])
    rows = np.array([0, 2, 5])
    ref = _decay_grad(x, data["t"][rows], data["y"][rows])
    _close(_exact_grad(f, x, {**data, "batch": rows}), ref)
    assert check_grad(f, x, {**data, "batch": slice(1, 4)}, method="exact").ok


def test_a_wrong_gradient_with_data_is_caught(decay) -> None:
    f, data = decay
    chk = check_grad(Perturbed(f, 1), np.array([0.8, 0.6]), data, method="exact")
    assert not chk.ok and chk.worst == 1


def test_hessian_with_data(decay) -> None:
    f, data = decay
    x = np.array([0.8, 0.6])
    assert check_hessian(f, x, data, method="exact").ok
    _close(_exact_hessian(f, x, data), f.hessian(x, **data), rtol=1e-11)


def test_vector_columns_and_sums() -> None:
    w = sg.params("w1 w2")
    X = sg.data("X", shape=(2,))
    y = sg.data("y")
    f = sg.compile(sg.sum((w[0] * X[0] + w[1] * X[1] - y) ** 2))
    rng = np.random.default_rng(4)
    data = {"X": rng.normal(size=(6, 2)), "y": rng.normal(size=6)}
    x = np.array([0.3, -1.1])
    ref = 2 * data["X"].T @ (data["X"] @ x - data["y"])
    _close(_exact_grad(f, x, data), ref)


def test_index_sums_over_vectors() -> None:
    lam = sg.params("lam")
    u = sg.params("u", indexed=True)
    w = sg.data("w", indexed=True)
    i = sg.index("i")
    f = sg.compile(lam**2 * sg.sum((u[i + 1] - u[i]) ** 2, (i, 0, u.length - 1))
                   + sg.sum(w[i] * u[i] ** 2, (i, 0, u.length)))
    rng = np.random.default_rng(5)
    n = 5
    data = {"w": rng.uniform(1, 2, n)}
    x = rng.normal(size=1 + n)
    lam_, uu = x[0], x[1:]
    d = np.diff(uu)
    gu = 2 * data["w"] * uu
    gu[1:] += 2 * lam_**2 * d
    gu[:-1] -= 2 * lam_**2 * d
    ref = np.concatenate([[2 * lam_ * np.sum(d**2)], gu])
    _close(_exact_grad(f, x, data), ref)
    assert check_grad(f, x, data, method="exact").ok


def test_too_many_samples_are_refused_with_the_size(decay) -> None:
    f, _ = decay
    big = {"t": np.linspace(0, 1, 50_000), "y": np.zeros(50_000)}
    with pytest.raises(ExactTooLarge, match=r"50000 samples.*batch=") as err:
        check_grad(f, np.array([0.8, 0.6]), big, method="exact")
    assert isinstance(err.value, NotImplementedError)
    assert check_grad(f, np.array([0.8, 0.6]), {**big, "batch": slice(0, 8)}, method="exact").ok


# -- array losses ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def linreg():
    w = sg.params("w", shape=(3,))
    X = sg.data("X", shape=(3,))
    y = sg.data("y")
    f = sg.compile(sg.mean((X @ w - y) ** 2))
    rng = np.random.default_rng(6)
    return f, {"X": rng.normal(size=(5, 3)), "y": rng.normal(size=5)}


def test_array_least_squares_against_numpy(linreg) -> None:
    f, data = linreg
    x = np.array([0.5, -0.2, 1.5])
    X, y = data["X"], data["y"]
    _close(_exact_grad(f, x, data), 2 / len(y) * X.T @ (X @ x - y))
    _close(_exact_hessian(f, x, data), 2 / len(y) * X.T @ X)
    assert check_grad(f, x, data, method="exact").ok
    assert check_hessian(f, x, data, method="exact").ok
    chk = check_grad(Perturbed(f, 2), x, data, method="exact")
    assert not chk.ok and chk.worst == 2


@pytest.fixture(scope="module")
def mlp():
    W1, b1 = sg.params("W1", shape=(4, 3)), sg.params("b1", shape=(4,))
    W2 = sg.params("W2", shape=(3, 4))
    X, Y = sg.data("X", shape=(3,)), sg.data("Y", shape=(3,))
    logits = W2 @ sg.relu(W1 @ X + b1)
    f = sg.compile(sg.mean(-sg.sum(Y * sg.log_softmax(logits), axis=0)) + 1e-2 * sg.sum(W1**2))
    rng = np.random.default_rng(7)
    data = {"X": rng.normal(size=(4, 3)), "Y": np.eye(3)[rng.integers(0, 3, 4)]}
    return f, data


def test_mlp_relu_softmax(mlp) -> None:
    f, data = mlp
    x = f.init(1) + 0.1 * np.random.default_rng(8).normal(size=f.n_params)
    chk = check_grad(f, x, data, method="exact")
    assert chk.ok and chk.max_rel_err < 1e-12
    bad = check_grad(Perturbed(f, 5, 1e-7), x, data, method="exact")
    assert not bad.ok and bad.worst == 5


def _interp_value(f, x, data) -> float:
    import sympy

    expr, syms = exact_loss(f, x, data)
    return float(sympy.N(expr.xreplace(dict(zip(syms, map(sympy.Float, x), strict=True))), 30))


GRAPHS = {
    "matmul_tanh_max": lambda: (
        lambda W, X: sg.mean(sg.max(sg.tanh(W @ X), axis=0)),
        {"W": (3, 2)}, {"X": (2,)}),
    "slices": lambda: (
        lambda u, X: sg.sum((u[1:, :] - u[:-1, :]) ** 2) + sg.mean(sg.sum(X * u[0, :], axis=0)),
        {"u": (4, 3)}, {"X": (3,)}),
    "softmax_lse": lambda: (
        lambda W, X: sg.mean(sg.logsumexp(W @ X, axis=-1) + sg.sum(sg.softmax(W @ X)**2,
                                                                     axis=0)),
        {"W": (3, 2)}, {"X": (2,)}),
}


@pytest.mark.parametrize("case", sorted(GRAPHS))
def test_interpreter_matches_the_compiled_value(case) -> None:
    build, pshapes, dshapes = GRAPHS[case]()
    ps = [sg.params(f"{case}_{n}", shape=s) for n, s in pshapes.items()]
    ds = [sg.data(f"{case}_{n}", shape=s) for n, s in dshapes.items()]
    f = sg.compile(build(*ps, *ds))
    rng = np.random.default_rng(len(case))
    for _ in range(3):
        data = {d.name: rng.normal(size=(5, *s)) for d, s in zip(ds, dshapes.values(),
                                                                strict=True)}
        x = rng.normal(size=f.n_params)
        np.testing.assert_allclose(_interp_value(f, x, data), f.value(x, **data), rtol=1e-13)
        _close(_exact_grad(f, x, data), f.grad(x, **data), rtol=1e-11)


@pytest.fixture(scope="module")
def factors():
    U, V = sg.params("U", shape=(4, 2)), sg.params("V", shape=(3, 2))
    i, j = sg.data("i j", dtype=int)
    r = sg.data("r")
    f = sg.compile(sg.mean((sg.sum(U[i] * V[j], axis=0) - r) ** 2) + 1e-2 * sg.sum(U**2))
    rng = np.random.default_rng(9)
    data = {"i": rng.integers(0, 4, 6), "j": rng.integers(0, 3, 6), "r": rng.normal(size=6)}
    return f, data


def test_gathers_against_numpy(factors) -> None:
    f, data = factors
    x = np.random.default_rng(10).normal(size=f.n_params)
    U, V = x[:8].reshape(4, 2), x[8:].reshape(3, 2)
    i, j, r = data["i"], data["j"], data["r"]
    e = np.sum(U[i] * V[j], axis=1) - r
    gU, gV = 2e-2 * U, np.zeros_like(V)
    np.add.at(gU, i, 2 / len(r) * e[:, None] * V[j])
    np.add.at(gV, j, 2 / len(r) * e[:, None] * U[i])
    _close(_exact_grad(f, x, data), np.concatenate([gU.ravel(), gV.ravel()]))
    np.testing.assert_allclose(_interp_value(f, x, data), f.value(x, **data), rtol=1e-13)
    assert not check_grad(Perturbed(f, 9), x, data, method="exact").ok


def test_max_tie_shares_the_derivative_like_the_kernel() -> None:
    w = sg.params("tie_w", shape=(2,))
    X = sg.data("tie_X", shape=(2,))
    f = sg.compile(sg.mean(sg.max(w * X, axis=0)))
    x = np.array([1.0, 1.0])
    data = {"tie_X": np.array([[2.0, 2.0], [1.0, 3.0]])}
    g = _exact_grad(f, x, data)
    _close(g, np.array([0.5, 0.5 + 1.5]))  # sample 0 ties: 2/2 each, halved by the mean
    _close(g, f.grad(x, **data))


def test_relu_at_zero_follows_the_policy() -> None:
    w = sg.params("rz_w", shape=(2,))
    X = sg.data("rz_X", shape=(2,))
    f = sg.compile(sg.mean(sg.relu(X @ w)))
    x = np.array([1.0, -1.0])
    data = {"rz_X": np.array([[1.0, 1.0], [2.0, 1.0]])}  # sample 0 sits at relu's kink
    _close(_exact_grad(f, x, data), np.array([1.0, 0.5]))
    _close(_exact_grad(f, x, data), f.grad(x, **data))


def test_array_too_big_is_refused(linreg) -> None:
    f, _ = linreg
    big = {"X": np.ones((20_000, 3)), "y": np.ones(20_000)}
    with pytest.raises(ExactTooLarge, match="20000 samples"):
        _exact_grad(f, np.zeros(3), big)


# -- residual kernels ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def resid():
    a, b = sg.params("a b")
    t, y = sg.data("t y")
    rk = sg.compile_residuals([a * sg.exp(-b * t) - y, 0.5 * (a - b)])
    rng = np.random.default_rng(11)
    return ResidualLoss(rk), {"t": rng.uniform(0, 2, 6), "y": rng.normal(size=6)}


def test_residuals_against_numpy(resid) -> None:
    f, data = resid
    x = np.array([1.3, 0.4])
    t, y = data["t"], data["y"]
    e = np.exp(-x[1] * t)
    r1, r2 = x[0] * e - y, 0.5 * (x[0] - x[1])
    ref = np.array([np.sum(r1 * e) + len(t) * r2 * 0.5, np.sum(r1 * x[0] * -t * e)
                    - len(t) * r2 * 0.5])
    _close(_exact_grad(f, x, data), ref)
    assert check_grad(f, x, data, method="exact").ok
    assert not check_grad(Perturbed(f, 0), x, data, method="exact").ok


def test_parameter_only_residuals() -> None:
    x1, x2 = sg.params("x1 x2")
    f = ResidualLoss(sg.compile_residuals([10 * (x2 - x1**2), 1 - x1]))
    x = np.array([-1.2, 1.0])
    r = np.array([10 * (x[1] - x[0] ** 2), 1 - x[0]])
    J = np.array([[-20 * x[0], 10.0], [-1.0, 0.0]])
    _close(_exact_grad(f, x, None), J.T @ r)
    # the oracle's Hessian of a residual kernel is Gauss-Newton, like its hvp/hessian
    _close(_exact_hessian(f, x, None), J.T @ J)
    loss, syms = exact_loss(f, x, None)
    true = [[float(sympy.diff(loss, a, b).subs(dict(zip(syms, x, strict=True))))
             for b in syms] for a in syms]
    _close(np.array(true), J.T @ J + r[0] * np.array([[-20.0, 0], [0, 0]]))


def test_gauss_newton_hessian_with_data(resid) -> None:
    f, data = resid
    x = np.array([1.3, 0.4])
    assert check_hessian(f, x, data, method="exact").ok
    J = f.rk.jacobian(x, **data)
    _close(_exact_hessian(f, x, data), J.T @ J, rtol=1e-11)


def test_unknown_kinds_are_refused() -> None:
    class Model:
        kind, params = "model", ("a",)

    with pytest.raises(NotImplementedError, match="kind 'model'"):
        _exact_grad(Model(), np.zeros(1), None)


def test_richardson_verifies_a_data_kink_with_the_oracle() -> None:
    # sample 0 sits on relu's kink: differences cannot check it, the oracle (with the kernel's
    # KinkPolicy) can; before the oracle took data the component stayed unverified
    w = sg.params("rk_w", shape=(2,))
    X = sg.data("rk_X", shape=(2,))
    f = sg.compile(sg.mean(sg.relu(X @ w)))
    data = {"rk_X": np.array([[1.0, 1.0], [2.0, 1.0]])}
    chk = check_grad(f, np.array([1.0, -1.0]), data, method="richardson")
    assert chk.ok and not chk.unverified and chk.kinks, chk.notes


def test_scalar_kernels_keep_their_kink_policy() -> None:
    a = sg.params("kp_a")
    t = sg.data("kp_t")
    pol = sg.KinkPolicy(relu=1.0, abs=0.25, tie=0.25)
    f = sg.compile(sg.mean(sg.relu(a * t - 1) + abs(a - t) + sympy.Max(a, t) - a**2), policy=pol)
    x, data = np.array([1.0]), {"kp_t": np.array([1.0, 2.0, 0.5])}  # sample 0: three ties
    _close(_exact_grad(f, x, data), f.grad(x, **data))
    # per sample: relu' * t + d|t - a|/da + Max share (t = 1: the policy's values at the ties;
    # SymPy writes abs(a - t) as Abs(t - a), so abs'(0) = 0.25 gives -0.25)
    ref = np.mean([1.0 - 0.25 + 0.25, 2.0 - 1.0 + 0.0, 0.0 + 1.0 + 1.0]) - 2.0
    _close(_exact_grad(f, x, data), [ref])


def _objects(a: np.ndarray) -> np.ndarray:
    return np.vectorize(sympy.Float, otypes=[object])(a)


def test_interpreter_pads_and_scatters_directly() -> None:
    # the adjoint nodes appear in derivative graphs only: build them by hand
    from symgrad.arrays.graph import Leaf, Pad, Scatter, Window, reduce_
    from symgrad.arrays.interp import Smoother, interpret

    u = Leaf("param", "pu", (4, 3))
    win = Window(u, ((1, 0), 2), (3,))  # u[1:, 2]
    pad = Pad(win, ((1, 0), 2), u.shape)  # back into a zeroed (4, 3)
    rng = np.random.default_rng(12)
    U = rng.normal(size=(4, 3))
    out = interpret(reduce_("sum", pad * pad, ()), {"pu": _objects(U)}, 0, Smoother({}))
    ref = np.zeros((4, 3))
    ref[1:, 2] = U[1:, 2]
    assert abs(float(out) - np.sum(ref**2)) < 1e-13

    rows = Leaf("data", "sr", ("N", 2))
    idx = Leaf("index", "si", ("N",))
    sc = Scatter(rows, idx, (Leaf("param", "sU", (5, 2)).shape))
    R, ii = rng.normal(size=(6, 2)), rng.integers(0, 5, 6)
    got = interpret(reduce_("sum", sc * sc, ()), {"sr": _objects(R), "si": ii.astype(object)}, 6,
                    Smoother({}))
    acc = np.zeros((5, 2))
    np.add.at(acc, ii, R)
    assert abs(float(got) - np.sum(acc**2)) < 1e-12


def test_whole_array_data_and_slices_against_numpy() -> None:
    u = sg.params("img_u", shape=(4, 3))
    f_ = sg.data("img_f", shape=(4, 3), samples=False)
    f = sg.compile(0.5 * sg.sum((u - f_) ** 2) + 0.3 * sg.sum((u[1:, :] - u[:-1, :]) ** 2))
    rng = np.random.default_rng(13)
    data = {"img_f": rng.normal(size=(4, 3))}
    x = rng.normal(size=12)
    U = x.reshape(4, 3)
    d = U[1:] - U[:-1]
    g = U - data["img_f"]
    g[1:] += 0.6 * d
    g[:-1] -= 0.6 * d
    _close(_exact_grad(f, x, data), g.ravel())
    assert check_grad(f, x, data, method="exact").ok


def test_bound_kernels_are_refused_in_the_users_terms(linreg) -> None:
    f, data = linreg
    with pytest.raises(NotImplementedError, match="bound kernel: pass the kernel itself"):
        check_grad(f.bind(**data), np.zeros(3), method="exact")


def test_a_lone_max_tie_with_data_follows_the_policy() -> None:
    # SymPy's Max is no Function: the smoother must still see it (regression)
    a = sg.params("lm_a")
    t = sg.data("lm_t")
    f = sg.compile(sg.mean(sympy.Max(a, t) ** 2), policy=sg.KinkPolicy(tie=0.25))
    x, data = np.array([1.0]), {"lm_t": np.array([1.0, 0.5])}
    _close(_exact_grad(f, x, data), [(2 * 0.25 + 2.0) / 2])
    _close(_exact_grad(f, x, data), f.grad(x, **data))
