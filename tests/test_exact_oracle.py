"""check_grad(method="exact") on scalar losses with data and on residual kernels.

The oracle unrolls the loss over the (small) data into one SymPy expression, differentiates it
with ``sympy.diff`` and evaluates at 50 digits; here it is compared with hand-written NumPy
gradients, and a deliberately wrong gradient must be caught. Array losses:
tests/test_exact_arrays.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy
from oracle_helpers import Perturbed, ResidualLoss, close

import symgrad as sg
from symgrad import check_grad, check_hessian
from symgrad.check.exact import _exact_grad, _exact_hessian
from symgrad.check.unroll import ExactTooLarge, exact_loss

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
    close(_exact_grad(f, x, data), _decay_grad(x, **data))
    chk = check_grad(f, x, data, method="exact")
    assert chk.ok and chk.max_rel_err < 1e-13


def test_scalar_loss_with_data_honours_batch(decay) -> None:
    f, data = decay
    x = np.array([0.8, 0.6])
    rows = np.array([0, 2, 5])
    ref = _decay_grad(x, data["t"][rows], data["y"][rows])
    close(_exact_grad(f, x, {**data, "batch": rows}), ref)
    assert check_grad(f, x, {**data, "batch": slice(1, 4)}, method="exact").ok


def test_a_wrong_gradient_with_data_is_caught(decay) -> None:
    f, data = decay
    chk = check_grad(Perturbed(f, 1), np.array([0.8, 0.6]), data, method="exact")
    assert not chk.ok and chk.worst == 1


def test_hessian_with_data(decay) -> None:
    f, data = decay
    x = np.array([0.8, 0.6])
    assert check_hessian(f, x, data, method="exact").ok
    close(_exact_hessian(f, x, data), f.hessian(x, **data), rtol=1e-11)


def test_vector_columns_and_sums() -> None:
    w = sg.params("w1 w2")
    X = sg.data("X", shape=(2,))
    y = sg.data("y")
    f = sg.compile(sg.sum((w[0] * X[0] + w[1] * X[1] - y) ** 2))
    rng = np.random.default_rng(4)
    data = {"X": rng.normal(size=(6, 2)), "y": rng.normal(size=6)}
    x = np.array([0.3, -1.1])
    ref = 2 * data["X"].T @ (data["X"] @ x - data["y"])
    close(_exact_grad(f, x, data), ref)


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
    close(_exact_grad(f, x, data), ref)
    assert check_grad(f, x, data, method="exact").ok


@pytest.mark.slow  # builds a 50,000-sample expression to refuse it (about 4 s)
def test_too_many_samples_are_refused_with_the_size(decay) -> None:
    f, _ = decay
    big = {"t": np.linspace(0, 1, 50_000), "y": np.zeros(50_000)}
    with pytest.raises(ExactTooLarge, match=r"50000 samples.*batch=") as err:
        check_grad(f, np.array([0.8, 0.6]), big, method="exact")
    assert isinstance(err.value, NotImplementedError)
    assert check_grad(f, np.array([0.8, 0.6]), {**big, "batch": slice(0, 8)}, method="exact").ok


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
    close(_exact_grad(f, x, data), ref)
    assert check_grad(f, x, data, method="exact").ok
    assert not check_grad(Perturbed(f, 0), x, data, method="exact").ok


def test_parameter_only_residuals() -> None:
    x1, x2 = sg.params("x1 x2")
    f = ResidualLoss(sg.compile_residuals([10 * (x2 - x1**2), 1 - x1]))
    x = np.array([-1.2, 1.0])
    r = np.array([10 * (x[1] - x[0] ** 2), 1 - x[0]])
    J = np.array([[-20 * x[0], 10.0], [-1.0, 0.0]])
    close(_exact_grad(f, x, None), J.T @ r)
    # the oracle's Hessian of a residual kernel is Gauss-Newton, like its hvp/hessian
    close(_exact_hessian(f, x, None), J.T @ J)
    loss, syms = exact_loss(f, x, None)
    true = [[float(sympy.diff(loss, a, b).subs(dict(zip(syms, x, strict=True))))
             for b in syms] for a in syms]
    close(np.array(true), J.T @ J + r[0] * np.array([[-20.0, 0], [0, 0]]))


def test_gauss_newton_hessian_with_data(resid) -> None:
    f, data = resid
    x = np.array([1.3, 0.4])
    assert check_hessian(f, x, data, method="exact").ok
    J = f.rk.jacobian(x, **data)
    close(_exact_hessian(f, x, data), J.T @ J, rtol=1e-11)


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
    close(_exact_grad(f, x, data), f.grad(x, **data))
    # per sample: relu' * t + d|t - a|/da + Max share (t = 1: the policy's values at the ties;
    # SymPy writes abs(a - t) as Abs(t - a), so abs'(0) = 0.25 gives -0.25)
    ref = np.mean([1.0 - 0.25 + 0.25, 2.0 - 1.0 + 0.0, 0.0 + 1.0 + 1.0]) - 2.0
    close(_exact_grad(f, x, data), [ref])


def test_a_lone_max_tie_with_data_follows_the_policy() -> None:
    # SymPy's Max is no Function: the smoother must still see it (regression)
    a = sg.params("lm_a")
    t = sg.data("lm_t")
    f = sg.compile(sg.mean(sympy.Max(a, t) ** 2), policy=sg.KinkPolicy(tie=0.25))
    x, data = np.array([1.0]), {"lm_t": np.array([1.0, 0.5])}
    close(_exact_grad(f, x, data), [(2 * 0.25 + 2.0) / 2])
    close(_exact_grad(f, x, data), f.grad(x, **data))
