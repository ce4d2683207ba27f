"""check_grad(method="exact") on array losses: the graph interpreted with SymPy scalars.

The interpreter (symgrad/arrays/interp.py) is compared with the compiled kernels' values on
seeded random inputs and with NumPy gradients; a deliberately wrong gradient must be caught.
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy
from oracle_helpers import Perturbed, close

import symgrad as sg
from symgrad import check_grad, check_hessian
from symgrad.check.exact import _exact_grad, _exact_hessian
from symgrad.check.unroll import ExactTooLarge, exact_loss

# these tests are of the array code: small losses do not fuse into one sample loop here
pytestmark = pytest.mark.usefixtures("array_code")

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
    close(_exact_grad(f, x, data), 2 / len(y) * X.T @ (X @ x - y))
    close(_exact_hessian(f, x, data), 2 / len(y) * X.T @ X)
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


@pytest.mark.slow  # 50-digit oracle of a 48-weight MLP (about 6 s)
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


@pytest.mark.slow  # one cold array module per case (about 5 s each)
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
        close(_exact_grad(f, x, data), f.grad(x, **data), rtol=1e-11)


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
    close(_exact_grad(f, x, data), np.concatenate([gU.ravel(), gV.ravel()]))
    np.testing.assert_allclose(_interp_value(f, x, data), f.value(x, **data), rtol=1e-13)
    assert not check_grad(Perturbed(f, 9), x, data, method="exact").ok


def test_max_tie_shares_the_derivative_like_the_kernel() -> None:
    w = sg.params("tie_w", shape=(2,))
    X = sg.data("tie_X", shape=(2,))
    f = sg.compile(sg.mean(sg.max(w * X, axis=0)))
    x = np.array([1.0, 1.0])
    data = {"tie_X": np.array([[2.0, 2.0], [1.0, 3.0]])}
    g = _exact_grad(f, x, data)
    close(g, np.array([0.5, 0.5 + 1.5]))  # sample 0 ties: 2/2 each, halved by the mean
    close(g, f.grad(x, **data))


def test_relu_at_zero_follows_the_policy() -> None:
    w = sg.params("rz_w", shape=(2,))
    X = sg.data("rz_X", shape=(2,))
    f = sg.compile(sg.mean(sg.relu(X @ w)))
    x = np.array([1.0, -1.0])
    data = {"rz_X": np.array([[1.0, 1.0], [2.0, 1.0]])}  # sample 0 sits at relu's kink
    close(_exact_grad(f, x, data), np.array([1.0, 0.5]))
    close(_exact_grad(f, x, data), f.grad(x, **data))


def test_array_too_big_is_refused(linreg) -> None:
    f, _ = linreg
    big = {"X": np.ones((20_000, 3)), "y": np.ones(20_000)}
    with pytest.raises(ExactTooLarge, match="20000 samples"):
        _exact_grad(f, np.zeros(3), big)


def _objects(a: np.ndarray) -> np.ndarray:
    return np.vectorize(sympy.Float, otypes=[object])(a)


def test_interpreter_pads_and_scatters_directly() -> None:
    # the adjoint nodes appear in derivative graphs only: build them by hand
    from symgrad.ir.graph import Leaf, Pad, Scatter, Window, reduce_
    from symgrad.ir.interp import Smoother, interpret

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
    close(_exact_grad(f, x, data), g.ravel())
    assert check_grad(f, x, data, method="exact").ok


def test_bound_kernels_are_refused_in_the_users_terms(linreg) -> None:
    f, data = linreg
    with pytest.raises(NotImplementedError, match="bound kernel: pass the kernel itself"):
        check_grad(f.bind(**data), np.zeros(3), method="exact")


