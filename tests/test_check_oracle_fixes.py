"""Regressions of the exact oracle and the checker's verdicts (probe I).

- float literals are their exact binary values (SymPy folded ``2e8*(a - 0.1)`` at 15 digits);
- scalar residual kernels are checked with their KinkPolicy;
- parameter-only losses resolve their kinks at ``x`` as the data losses do (policy, Max chain),
  so Heaviside/sign/floor/abs kinks give a verdict, never a raw SymPy exception;
- fused parameter-only array losses (``f.params`` names arrays) are checked exactly;
- a wrong Hessian beside a right hvp blames the Hessian; the data-kink note only with kinks.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import sympy as sp
from oracle_helpers import Perturbed

import symgrad as sg
from symgrad import check_grad, check_hessian
from symgrad.check.exact import _exact_grad

# -- float literals: exact binary values --------------------------------------------------------

def test_parameter_only_float_literals_are_exact() -> None:
    a, b = sg.params("a b")
    f = sg.compile(1e8 * (a - 0.1) ** 2 + (b - 0.3) ** 2)
    x = np.array([0.1, 0.3])  # the literals' doubles: the gradient is exactly 0
    chk = check_grad(f, x, method="exact")
    assert chk.ok and np.all(chk.numeric == 0.0), chk.table()
    assert not check_grad(Perturbed(f, 0, 1e-9), x, method="exact").ok
    assert check_hessian(f, x, method="exact").ok


def test_float_literals_are_exact_on_every_oracle_path() -> None:
    a, b = sg.params("a b")
    t = sg.data("t")
    one = {"t": np.array([1.0, 1.0])}
    f = sg.compile(sg.mean(1e8 * (a * t - 0.1) ** 2) + (b - 0.3) ** 2)  # data
    assert np.all(_exact_grad(f, np.array([0.1, 0.3]), one) == 0.0)

    u = sg.params("u", indexed=True)
    i = sg.index("i")
    f = sg.compile(1e8 * sg.sum((u[i] - 0.1) ** 2, (i, 0, u.length)))  # an index sum
    assert np.all(_exact_grad(f, np.full(3, 0.1)) == 0.0)

    W = sg.params("W", shape=(3,))
    f = sg.compile(1e8 * sg.sum((W - 0.1) ** 2), fuse=False)  # the array graph
    assert f.kind == "array"
    assert np.all(_exact_grad(f, np.full(3, 0.1)) == 0.0)

    # residuals (1e8*(a - 0.1) would be distributed, rounded, by SymPy on construction)
    rk = sg.compile_residuals([1e8 * (a - 0.1) ** 2 + 1, b - 0.3])
    assert np.all(_exact_grad(rk, np.array([0.1, 0.3])) == 0.0)


# -- residual kernels: the KinkPolicy -----------------------------------------------------------

def test_scalar_residuals_follow_the_kink_policy() -> None:
    a, b = sg.params("a b")
    t, y = sg.data("t y")
    rk = sg.compile_residuals(sg.abs(a * t - b) - y, policy=sg.KinkPolicy(abs=1.0))
    x, d = np.array([1.0, 1.0]), {"t": np.array([1.0, 2.0]), "y": np.array([0.5, 0.5])}
    chk = check_grad(rk, x, data=d, method="exact")  # sample 0 sits at |0|: abs'(0) = 1
    assert chk.ok and np.array_equal(chk.numeric, rk.grad(x, **d)), chk.table()
    assert check_hessian(rk, x, data=d).ok
    assert not check_grad(Perturbed(rk, 1, 1e-6), x, data=d, method="exact").ok


# -- parameter-only kinks: the policy, and never a raw SymPy exception ---------------------------

def test_parameter_only_max_tie_follows_the_documented_chain() -> None:
    a, b, c = sg.params("a b c")
    x = np.ones(3)
    f = sg.compile(sg.max(a, b, c))
    chk = check_grad(f, x, method="exact")
    assert chk.ok and chk.unverified == (), chk.table()
    np.testing.assert_array_equal(chk.numeric, f.grad(x))  # 1/4, 1/4, 1/2 (README)
    assert sorted(chk.numeric) == [0.25, 0.25, 0.5]
    assert not check_grad(Perturbed(f, 2, 1e-3), x, method="exact").ok


@pytest.mark.parametrize("case", ["relu", "abs", "max"])
def test_parameter_only_kinks_follow_the_kernels_policy(case: str) -> None:
    a, b = sg.params("a b")
    e, x = {"relu": (sg.relu(a) + b, [0.0, 1.0]), "abs": (sg.abs(a) + b, [0.0, 1.0]),
            "max": (sg.max(a, b), [1.0, 1.0])}[case]
    f = sg.compile(e, policy=sg.KinkPolicy(relu=1.0, abs=1.0, tie=0.25))
    x = np.array(x)
    for method in ("exact", "auto"):
        chk = check_grad(f, x, method=method)
        assert chk.ok and chk.unverified == (), chk.table()
    assert not check_grad(Perturbed(f, 0, 1e-3), x, method="exact").ok
    assert not check_grad(Perturbed(f, 0, 1e-3), x).ok


@pytest.mark.parametrize("method", ["auto", "exact"])
@pytest.mark.parametrize("case", ["heaviside", "sign", "floor"])
def test_parameter_only_jumps_give_a_verdict(case: str, method: str) -> None:
    a, b = sg.params("a b")
    e = {"heaviside": sp.Heaviside(a - 1) * b, "sign": sp.sign(a - 1) * b,
         "floor": sp.floor(a) * b + a}[case]
    f = sg.compile(e)
    for x in ([1.0, 1.0], [1.5, 1.0]):  # at the jump, and off it
        chk = check_grad(f, np.array(x), method=method)  # raised TypeError / a printer error
        assert chk.ok, chk.table()


@pytest.mark.parametrize("case", ["abs", "relu", "max"])
def test_exact_hessian_at_parameter_only_kinks(case: str) -> None:
    a, b = sg.params("a b")
    e, x = {"abs": (sg.abs(a) * b, [0.0, 1.0]), "relu": (sg.relu(a) * b + a**2, [0.0, 1.0]),
            "max": (sg.max(a, b) ** 2, [1.0, 1.0])}[case]
    f = sg.compile(e)
    chk = check_hessian(f, np.array(x), method="exact")  # raised TypeError (DiracDelta(0))
    assert chk.ok, chk.table()


class _Duck:
    """A duck-typed parameter-only kernel whose loss has a function SymPy cannot differentiate."""

    kind, analytic = "scalar", False

    def __init__(self, expr: Any, params: tuple[str, ...]) -> None:
        self.expr, self.params = expr, params

    def value(self, x: np.ndarray, **data: Any) -> float:
        return float(x[0] % 1.0 * x[1])

    def grad(self, x: np.ndarray, **data: Any) -> np.ndarray:
        return np.array([x[1], x[0] % 1.0])


def test_an_unsupported_function_is_named_not_raised_raw() -> None:
    a, b = sp.symbols("a b")
    with pytest.raises(NotImplementedError, match=r"cannot evaluate the derivative .*frac"):
        check_grad(_Duck(sp.frac(a) * b, ("a", "b")), np.array([0.5, 1.0]), method="exact")


# -- fused parameter-only array losses ----------------------------------------------------------

def test_fused_parameter_only_array_loss_is_checked_exactly() -> None:
    u = sg.params("u", shape=(2, 2))
    loss = sg.sum(sg.tanh(u[1:, :] - u[:-1, :]) ** 2) + sg.sum(sg.relu(u))
    f = sg.compile(loss)
    assert f.kind == "scalar" and f.params == ("u",)  # fused: one name for four entries
    x = np.array([0.3, -0.2, 0.0, 0.5])
    chk = check_grad(f, x, method="exact")
    assert chk.ok, chk.table()
    np.testing.assert_allclose(chk.numeric, sg.compile(loss, fuse=False).grad(x), rtol=1e-14)
    assert chk.kinks == (2,) and not any("depend on data" in n for n in chk.notes)  # u[1, 0]
    assert check_hessian(f, x, method="exact").ok
    assert check_grad(f, x).ok
    assert not check_grad(Perturbed(f, 3, 1e-6), x, method="exact").ok
    assert not check_grad(Perturbed(f, 2, 1e-6), x).ok


# -- messages -----------------------------------------------------------------------------------

class _WrongHessian:
    def __init__(self, k: Any) -> None:
        self._k = k

    def __getattr__(self, name: str) -> Any:
        return getattr(self._k, name)

    def hessian(self, x: np.ndarray, **data: Any) -> np.ndarray:
        H = np.array(self._k.hessian(x, **data))
        H[-1, -1] += 1e-6
        return H


def test_a_wrong_hessian_beside_a_right_hvp_blames_the_hessian() -> None:
    a, b = sg.params("a b")
    t = sg.data("t")
    f = sg.compile(sg.mean((a * t - b) ** 2 * sg.exp(a)))
    x, d = np.array([0.3, 0.7]), {"t": np.array([1.0, 2.0, 3.0])}
    chk = check_hessian(_WrongHessian(f), x, data=d, method="exact")
    assert not chk.ok and chk.hvp_ok, chk.table()
    assert "hvp ok" in chk.summary() and "FAILED" in chk.summary()
    assert any("the Hessian is wrong, not the hvp" in n for n in chk.notes)

    class WrongHvp(_WrongHessian):
        def hessian(self, x, **data):
            return self._k.hessian(x, **data)

        def hvp(self, x, v, **data):
            return self._k.hvp(x, v, **data) * (1 + 1e-6)

    chk = check_hessian(WrongHvp(f), x, data=d, method="exact")
    assert not chk.ok and not chk.hvp_ok and "hvp FAILED" in chk.summary()


def test_the_data_kink_note_only_for_losses_with_kinks() -> None:
    a, b = sg.params("a b")
    t, y = sg.data("t y")
    d = {"t": np.array([0.5, 1.0, 2.0]), "y": np.array([1.0, 0.4, 0.2])}
    f = sg.compile(sg.mean((a * sg.exp(-b * t) - y) ** 2), dtype="float32")  # not analytic
    smooth = check_grad(f, [1.0, 0.5], data=d, method="exact")
    assert smooth.ok and not any("kinks that depend on data" in n for n in smooth.notes)
    kinked = check_grad(sg.compile(sg.mean(sg.abs(a * sg.exp(-b * t) - y))), [1.0, 0.5],
                        data=d, method="exact")
    assert any("kinks that depend on data" in n for n in kinked.notes)


# -- the default check beside kinks that depend on data -----------------------------------------

def _data_kink_cases() -> dict[str, tuple[Any, np.ndarray, dict]]:
    a, b = sg.params("a b")
    t, y = sg.data("t y")
    W, X = sg.params("W", shape=(3,)), sg.data("X", shape=(3,))
    return {  # a sample exactly on its kink (a C1 join, a max tie, a one-sided policy)
        "huber": (sg.compile(sg.losses.huber(a * t + b, y, delta=2.0)), np.array([1.0, 0.0]),
                  {"t": np.array([1.0, 2.0, 3.0]), "y": np.zeros(3)}),
        "sqhinge": (sg.compile(sg.mean(sg.relu(1 - y * (a * t + b)) ** 2)),
                    np.array([0.5, 0.0]),
                    {"t": np.array([2.0, 1.0, -1.0]), "y": np.array([1.0, 1.0, -1.0])}),
        "array max tie": (sg.compile(sg.mean(sg.max(W * X, axis=-1))), np.ones(3),
                          {"X": np.ones((2, 3))}),
        "abs policy": (sg.compile(sg.mean(sg.abs(a) * t + b * t), policy=sg.KinkPolicy(abs=0.5)),
                       np.array([0.0, 1.0]), {"t": np.array([1.0, 2.0])}),
    }


@pytest.mark.parametrize("case", ["huber", "sqhinge", "array max tie", "abs policy"])
def test_default_check_at_a_data_kink_consults_the_oracle(case: str) -> None:
    f, x, d = _data_kink_cases()[case]
    chk = check_grad(f, x, data=d)  # was FAILED for these correct kernels
    assert chk.ok, chk.table()
    assert any("verified against the exact derivative" in n for n in chk.notes)
    for i in range(x.size):
        assert not check_grad(Perturbed(f, i, 1e-6), x, data=d).ok


def test_default_hessian_check_at_a_data_kink_consults_the_oracle() -> None:
    a, b = sg.params("a b")
    t = sg.data("t")
    d, x = {"t": np.array([1.0, 2.0])}, np.array([0.0, 1.0])
    f = sg.compile(sg.mean((sg.abs(a) ** 3 + a * b) * t))  # C2: H = [[0, 1.5], [1.5, 0]]
    chk = check_hessian(f, x, data=d)
    assert chk.ok and chk.hvp_ok, chk.table()
    assert not check_hessian(_WrongHessian(f), x, data=d).ok
