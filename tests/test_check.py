"""Tests for symgrad.check and symgrad.testing: the checker must catch wrong derivatives with
every method, pass correct ones, and not fail falsely at kinks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import sympy

import symgrad as sg
from symgrad.check import (
    GRAD_TOLERANCES,
    HESSIAN_TOLERANCES,
    GradCheck,
    HessianCheck,
    check_grad,
    check_hessian,
    kink_arguments,
)
from symgrad.testing import assert_grad_close, assert_hessian_close

# ---------------------------------------------------------------------------------------------
# Oracles: plain callables and a small SymPy-backed stand-in for a compiled Kernel
# ---------------------------------------------------------------------------------------------

X_ROSEN = np.array([-1.0, 2.0])
G_ROSEN = np.array([396.0, 200.0])  # the seed's gradient at (-1, 2)


def rosen(x: np.ndarray) -> float:
    return 100 * (x[1] - x[0] ** 2) ** 2 + (1 - x[0]) ** 2


def rosen_grad(x: np.ndarray) -> np.ndarray:
    return np.array([-400 * x[0] * (x[1] - x[0] ** 2) - 2 * (1 - x[0]), 200 * (x[1] - x[0] ** 2)])


def rosen_hess(x: np.ndarray) -> np.ndarray:
    return np.array([[1200 * x[0] ** 2 - 400 * x[1] + 2, -400 * x[0]], [-400 * x[0], 200.0]])


def sign_flip(g: Callable[..., np.ndarray], i: int = 0) -> Callable[..., np.ndarray]:
    def bad(x: np.ndarray, **data: Any) -> np.ndarray:
        out = np.array(g(x, **data), dtype=float)
        out[i] = -out[i]
        return out
    return bad


def off_by(
    g: Callable[..., np.ndarray], i: int = 0, rel: float = 1e-4
) -> Callable[..., np.ndarray]:
    def bad(x: np.ndarray, **data: Any) -> np.ndarray:
        out = np.array(g(x, **data), dtype=float)
        out[i] *= 1 + rel
        return out
    return bad


@dataclass
class FakeKernel:
    """Duck-typed Kernel built with sympy.lambdify (numpy: complex-safe). ``grad_fault`` /
    ``hess_fault`` inject bugs into the analytic derivatives."""

    expr: Any
    syms: tuple[Any, ...]
    grad_fault: Callable[[np.ndarray], np.ndarray] | None = None
    hess_fault: Callable[[np.ndarray], np.ndarray] | None = None
    data_names: tuple[str, ...] = ()
    _f: Any = field(init=False, repr=False)

    def __post_init__(self) -> None:
        s = list(self.syms)
        g = [sympy.diff(self.expr, v) for v in s]
        mods = [{"DiracDelta": lambda z: 0.0}, "numpy"]
        self._f = sympy.lambdify(s, self.expr, mods)
        self._g = sympy.lambdify(s, g, mods)
        self._h = sympy.lambdify(s, [[sympy.diff(gi, v) for v in s] for gi in g], mods)
        self.params = tuple(v.name for v in s)
        kinks = ("Abs", "Max", "Min", "Piecewise", "sign", "Heaviside")
        self.analytic = not any(type(e).__name__ in kinks for e in sympy.preorder_traversal(
            self.expr))

    def value(self, x: np.ndarray, **data: Any) -> float:
        return float(self._f(*x))

    def grad(self, x: np.ndarray, **data: Any) -> np.ndarray:
        g = np.array(self._g(*x), dtype=float)
        return self.grad_fault(g) if self.grad_fault else g

    def hessian(self, x: np.ndarray, **data: Any) -> np.ndarray:
        h = np.array(self._h(*x), dtype=float)
        return self.hess_fault(h) if self.hess_fault else h

    def hvp(self, x: np.ndarray, v: np.ndarray, **data: Any) -> np.ndarray:
        return self.hessian(x) @ v

    def value_complex(self, xc: np.ndarray, **data: Any) -> complex:
        if not self.analytic:
            raise TypeError("not analytic")
        return complex(self._f(*xc))


x1, x2, x3 = sympy.symbols("x1 x2 x3", real=True)
ROSEN_EXPR = 100 * (x2 - x1**2) ** 2 + (1 - x1) ** 2
SMOOTH_EXPR = sympy.exp(sympy.sin(x1) * x2) + sympy.tanh(x1 * x3) / (1 + x2**2) + sympy.log(
    1 + x3**2) * x1
X_SMOOTH = np.array([0.3, -0.7, 1.1])


def flip0(g: np.ndarray) -> np.ndarray:
    g = g.copy()
    g[0] = -g[0]
    return g


def nudge1(g: np.ndarray) -> np.ndarray:
    g = g.copy()
    g[1] *= 1 + 1e-4
    return g


# ---------------------------------------------------------------------------------------------
# Correct gradients pass; the seed's Rosenbrock gradient is (396, 200)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["central", "richardson", "complex"])
def test_correct_pair_passes(method: str) -> None:
    chk = check_grad((rosen, rosen_grad), X_ROSEN, method=method)
    assert chk.ok, chk.table()
    np.testing.assert_allclose(chk.analytic, G_ROSEN, rtol=0, atol=0)
    np.testing.assert_allclose(chk.numeric, G_ROSEN, rtol=1e-8)
    assert chk.method == method
    assert (chk.rtol, chk.atol) == (GRAD_TOLERANCES[method].rtol, GRAD_TOLERANCES[method].atol)


@pytest.mark.parametrize("method", ["central", "richardson", "complex", "exact", "auto"])
def test_correct_kernel_passes(method: str) -> None:
    k = FakeKernel(SMOOTH_EXPR, (x1, x2, x3))
    chk = check_grad(k, X_SMOOTH, method=method)
    assert chk.ok, chk.table()
    assert chk.names == ("x1", "x2", "x3")
    if method == "auto":
        assert chk.method == "complex"  # analytic kernel


def test_auto_is_richardson_for_callables() -> None:
    assert check_grad((rosen, rosen_grad), X_ROSEN).method == "richardson"


@pytest.mark.parametrize("method", ["complex", "exact"])
def test_complex_and_exact_reach_rounding(method: str) -> None:
    k = FakeKernel(ROSEN_EXPR, (x1, x2))
    chk = check_grad(k, X_ROSEN, method=method)
    assert chk.ok and chk.max_rel_err <= 1e-13, chk.table()


def test_large_loss_at_minimum_does_not_fail_central() -> None:
    # the noise floor of a difference quotient scales with |f|: 1e6 + |x - 1|^2 at its minimum
    fun = lambda x: 1e6 + float(np.sum((x - 1.0) ** 2))  # noqa: E731
    grad = lambda x: 2 * (x - 1.0)  # noqa: E731
    for method in ("central", "richardson"):
        assert check_grad((fun, grad), np.ones(3), method=method).ok


def test_data_is_passed_through() -> None:
    t = np.linspace(0, 1, 7)
    y = 2 * t + 1

    def fun(p: np.ndarray, *, t: np.ndarray, y: np.ndarray) -> float:
        return float(np.mean((p[0] * t + p[1] - y) ** 2))

    def grad(p: np.ndarray, *, t: np.ndarray, y: np.ndarray) -> np.ndarray:
        r = p[0] * t + p[1] - y
        return np.array([np.mean(2 * r * t), np.mean(2 * r)])

    data = {"t": t, "y": y}
    assert check_grad((fun, grad), [0.5, 0.2], data).ok
    assert not check_grad((fun, sign_flip(grad, 1)), [0.5, 0.2], data).ok


# ---------------------------------------------------------------------------------------------
# Wrong gradients are caught by every method
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["central", "richardson", "complex"])
@pytest.mark.parametrize("fault", ["sign", "rel1e-4"])
def test_pair_catches_wrong_gradient(method: str, fault: str) -> None:
    bad = sign_flip(rosen_grad, 0) if fault == "sign" else off_by(rosen_grad, 1, 1e-4)
    chk = check_grad((rosen, bad), X_ROSEN, method=method)
    assert not chk.ok
    assert chk.worst == (0 if fault == "sign" else 1)
    assert not chk.kinks


@pytest.mark.parametrize("method", ["central", "richardson", "complex", "exact"])
@pytest.mark.parametrize("fault", [flip0, nudge1])
def test_kernel_catches_wrong_gradient(method: str, fault: Callable[..., Any]) -> None:
    k = FakeKernel(SMOOTH_EXPR, (x1, x2, x3), grad_fault=fault)
    chk = check_grad(k, X_SMOOTH, method=method)
    assert not chk.ok, chk.table()
    assert chk.worst == (0 if fault is flip0 else 1)


@pytest.mark.parametrize("method", ["central", "richardson", "complex", "exact"])
def test_directions_catch_wrong_gradient(method: str) -> None:
    good = FakeKernel(SMOOTH_EXPR, (x1, x2, x3))
    chk = check_grad(good, X_SMOOTH, method=method, directions=4, seed=3)
    assert chk.ok and chk.analytic.shape == (4,), chk.table()
    assert chk.directions is not None and chk.directions.shape == (4, 3)
    np.testing.assert_allclose(np.linalg.norm(chk.directions, axis=1), 1.0)
    for fault in (flip0, nudge1):
        bad = FakeKernel(SMOOTH_EXPR, (x1, x2, x3), grad_fault=fault)
        assert not check_grad(bad, X_SMOOTH, method=method, directions=4, seed=3).ok


@pytest.mark.parametrize("fault", ["sign", "rel1e-4"])
def test_directions_on_pairs(fault: str) -> None:
    bad = sign_flip(rosen_grad, 0) if fault == "sign" else off_by(rosen_grad, 1, 1e-4)
    assert check_grad((rosen, rosen_grad), X_ROSEN, directions=3).ok
    assert not check_grad((rosen, bad), X_ROSEN, directions=3).ok
    assert not check_grad((rosen, bad), X_ROSEN, method="central", directions=3).ok


def test_directions_many_parameters() -> None:
    n = 200
    rng = np.random.default_rng(0)
    a = rng.uniform(0.5, 2.0, n)
    fun = lambda x: float(np.sum(a * np.cosh(x)) + np.sum(x) ** 2)  # noqa: E731
    grad = lambda x: a * np.sinh(x) + 2 * np.sum(x)  # noqa: E731
    x = rng.uniform(-1, 1, n)
    chk = check_grad((fun, grad), x, directions=5)
    assert chk.ok and chk.analytic.shape == (5,), chk.table()
    assert not check_grad((fun, off_by(grad, 17, 1e-3)), x, directions=5).ok


def test_directions_are_seeded() -> None:
    c1 = check_grad((rosen, rosen_grad), X_ROSEN, directions=3, seed=7)
    c2 = check_grad((rosen, rosen_grad), X_ROSEN, directions=3, seed=7)
    c3 = check_grad((rosen, rosen_grad), X_ROSEN, directions=3, seed=8)
    assert c1.directions is not None and c2.directions is not None and c3.directions is not None
    np.testing.assert_array_equal(c1.directions, c2.directions)
    assert not np.array_equal(c1.directions, c3.directions)
    u = np.array([[1.0, 1.0]])
    c4 = check_grad((rosen, rosen_grad), X_ROSEN, directions=u)
    np.testing.assert_allclose(c4.analytic, [G_ROSEN.sum() / np.sqrt(2)])


# ---------------------------------------------------------------------------------------------
# Kinks: reported in notes, excluded from ok, never a false failure
# ---------------------------------------------------------------------------------------------


def relu_pair() -> tuple[Callable[..., float], Callable[..., np.ndarray]]:
    def fun(x: np.ndarray) -> float:
        return max(x[0], 0.0) + x[1] ** 2

    def grad(x: np.ndarray) -> np.ndarray:  # relu'(0) = 0, the documented convention
        return np.array([1.0 if x[0] > 0 else 0.0, 2 * x[1]])

    return fun, grad


@pytest.mark.parametrize("method", ["central", "richardson"])
@pytest.mark.parametrize("x0", [0.0, 1e-7, -1e-7, 3e-6])
def test_numeric_kink_detection(method: str, x0: float) -> None:
    chk = check_grad(relu_pair(), [x0, 1.0], method=method)
    assert chk.kinks == (0,)
    assert any("non-smooth" in n and "x[0]" in n for n in chk.notes)
    if x0 == 0.0:  # on the kink: relu'(0) = 0 is a convention no difference can check
        assert not chk.ok and chk.unverified == (0,), chk.table()
        assert "NOT VERIFIED" in chk.summary() and "FAIL" not in chk.table()
    else:  # near it: a smaller step steps off the kink and verifies x[0]
        assert chk.ok and chk.unverified == (), chk.table()


def test_no_kink_far_from_it_and_real_bug_still_caught() -> None:
    fun, grad = relu_pair()
    chk = check_grad((fun, grad), [0.5, 1.0])
    assert chk.ok and not chk.kinks and not chk.notes
    chk = check_grad((fun, off_by(grad, 1, 1e-4)), [0.0, 1.0])
    assert not chk.ok and chk.kinks == (0,) and chk.worst == 1


@pytest.mark.parametrize("method", ["central", "richardson", "complex"])
def test_a_non_finite_gradient_or_hessian_fails(method: str) -> None:
    """|a - n| = inf against a limit rtol * max(|a|, |n|) = inf passed: inf <= inf."""
    def fun(x):
        return np.sum(x**2)

    chk = check_grad((fun, lambda x: np.array([np.inf, 2 * x[1]])), [1.0, 1.0], method=method)
    assert not chk.ok and chk.worst == 0, chk.table()
    if method != "complex":
        chk = check_hessian((lambda x: 2 * x, lambda x: np.array([[np.inf, 0.0], [0.0, 2.0]])),
                            [1.0, 1.0], method=method)
        assert not chk.ok, chk.table()


@pytest.mark.parametrize(("method", "rel"), [("central", 1e-2), ("auto", 1e-4)])
def test_a_wrong_smooth_component_fails_beside_data_kinks(method: str, rel: float) -> None:
    """A loss with kinks that depend on data retries failing components with smaller steps;
    the retry took the growing rounding noise as slack and passed a 1% error in ``c``, a
    component with no kink at all (the table said "verified at the kink")."""
    a, c = sg.params("a c")
    t, y = sg.data("t y")
    f = sg.compile(sg.mean(sg.abs(a * t - y)) + c**2, [a, c])
    rng = np.random.default_rng(0)
    data = {"t": rng.uniform(1, 2, 20), "y": rng.uniform(-1, 0, 20)}  # no sample near its kink
    x = np.array([0.6, 0.7])
    g = f.grad(x, **data)

    class Wrong:  # the kernel (its expression shows the data kinks) with a wrong grad
        def __getattr__(self, name):
            return getattr(f, name)

        def grad(self, z, **d):
            return np.array([g[0], g[1] * (1 + rel)])

    chk = check_grad(Wrong(), x, data=data, method=method)
    assert not chk.ok and chk.worst == 1 and not chk.kinks, chk.table()
    assert check_grad(f, x, data=data, method=method).ok


@pytest.mark.parametrize("method", ["central", "richardson"])
def test_a_wrong_value_beside_a_kink_fails(method: str) -> None:
    """x 1e-5 from the kink of 3|x1 - 1|: the error estimate's wider stencil held the kink and
    its slack passed a 5% error; the retry took ever smaller steps until their rounding noise
    passed a 1% error ("verified at the kink"). The first step clear of the kink decides."""
    def fun(x):
        return 3 * abs(x[0] - 1) + x[0] ** 2 * x[1] + np.exp(x[1])

    def grad(x, rel=0.0):
        return np.array([(3 * np.sign(x[0] - 1) + 2 * x[0] * x[1]) * (1 + rel),
                         x[0] ** 2 + np.exp(x[1])])

    x = [1 + 1e-5, 0.5]
    assert check_grad((fun, grad), x, method=method).ok
    for rel in (1e-4, 1e-2, 5e-2):
        chk = check_grad((fun, lambda z, rel=rel: grad(z, rel)), x, method=method)
        assert not chk.ok and chk.worst == 0 and not chk.unverified, (rel, chk.table())
    k = FakeKernel(3 * sympy.Abs(x1 - 1) + x1**2 * x2 + sympy.exp(x2), (x1, x2))
    assert check_hessian(k, x, method=method).ok
    bad = FakeKernel(k.expr, k.syms, hess_fault=lambda H: H * [[1, 1], [1, 1.01]])
    assert not check_hessian(bad, x, method=method).ok  # H[1, 1] 1% off, a smooth row


def test_a_difference_swamped_by_rounding_does_not_verify() -> None:
    """One sample's residual 1e-8 from its kink: a step clear of it is so small that its
    rounding error (2e-5) dwarfed rtol 1e-8 and verified a 1e-4 error; beyond 100 tolerances
    of slack the component is not verified."""
    a, b = sg.params("kk_a kk_b")
    t, y = sg.data("t y")
    f = sg.compile(sg.mean(sg.abs(a * t + b - y)) + a**2 * b)
    data = {"t": np.array([1.0, 2.0, -1.0, 0.5]), "y": np.array([0.0, 1.0, 2.0, -1.0])}
    x = np.array([0.3, -0.3 + 1e-8])
    g = f.grad(x, **data)
    pair = (lambda z: f.value(z, **data), lambda z: g * [1, 1 + 1e-4])
    chk = check_grad(pair, x, method="richardson")
    assert not chk.ok and 1 in chk.unverified and "FAIL" not in chk.table(), chk.table()
    assert check_grad(f, x, data=data, method="richardson").ok  # the exact oracle settles it


def test_smooth_minimum_is_not_a_kink() -> None:
    # one-sided differences at a smooth minimum disagree (+h f'', -h f''), but g = 0 is between
    fun = lambda x: float(1e4 * x[0] ** 2 + x[1] ** 2)  # noqa: E731
    grad = lambda x: np.array([2e4 * x[0], 2 * x[1]])  # noqa: E731
    for method in ("central", "richardson"):
        chk = check_grad((fun, grad), [0.0, 0.0], method=method)
        assert chk.ok and not chk.kinks, chk.table()


def test_symbolic_kink_detection() -> None:
    # |x1 - x2| + Max(x3, 1): at x1 = x2 + 1e-8 and x3 = 1 the stencils cross both kinks
    expr = sympy.Abs(x1 - x2) + sympy.Max(x3, 1) + x1 * x2
    k = FakeKernel(expr, (x1, x2, x3))
    assert not k.analytic
    x = np.array([0.5 + 1e-8, 0.5, 1.0])
    chk = check_grad(k, x, method="richardson")
    assert chk.ok, chk.table()
    assert set(chk.kinks) == {0, 1, 2}
    assert any("x1" in n and "x3" in n for n in chk.notes)
    chk = check_grad(k, np.array([0.9, 0.5, 2.0]), method="richardson")
    assert chk.ok and not chk.kinks
    with pytest.raises(ValueError, match="analytic"):
        check_grad(k, x, method="complex")


def test_exact_at_a_kink_is_flagged() -> None:
    k = FakeKernel(sympy.Max(x1, 0) + x2**2, (x1, x2))
    chk = check_grad(k, np.array([0.0, 1.0]), method="exact")
    assert chk.ok and chk.kinks == (0,)


def test_kink_arguments() -> None:
    a = kink_arguments(sympy.Abs(x1) + sympy.Min(x1, x2, 3) + sympy.Piecewise((x1, x2 > 1),
                                                                            (0, True)))
    assert x1 in a and x1 - x2 in a and x2 - 1 in a
    relu = type("relu", (sympy.Function,), {})
    assert kink_arguments(relu(x1 - 2)) == [x1 - 2]
    assert kink_arguments(x1**2 + sympy.exp(x2)) == []


# ---------------------------------------------------------------------------------------------
# exact / complex limitations give clear errors
# ---------------------------------------------------------------------------------------------


def test_exact_with_data_needs_the_data() -> None:
    k = FakeKernel(ROSEN_EXPR, (x1, x2), data_names=("t",))
    with pytest.raises(ValueError, match="data column 't' is missing"):
        check_grad(k, X_ROSEN, method="exact")


def test_exact_and_complex_need_a_kernel() -> None:
    with pytest.raises(ValueError, match="exact"):
        check_grad((rosen, rosen_grad), X_ROSEN, method="exact")


def test_complex_on_real_only_callable_is_noted() -> None:
    fun = lambda x: float(np.real(rosen(x)))  # noqa: E731  drops the imaginary part
    chk = check_grad((fun, rosen_grad), X_ROSEN, method="complex")
    assert not chk.ok and any("imaginary" in n for n in chk.notes)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="method"):
        check_grad((rosen, rosen_grad), X_ROSEN, method="forward")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="1-D"):
        check_grad((rosen, rosen_grad), np.ones((2, 2)))
    with pytest.raises(TypeError, match="pair"):
        check_grad(rosen, X_ROSEN)
    with pytest.raises(ValueError, match="directions"):
        check_grad((rosen, rosen_grad), X_ROSEN, directions=np.ones((2, 3)))
    with pytest.raises(ValueError, match="shape"):
        check_grad((rosen, lambda x: np.ones(3)), X_ROSEN)


def test_non_finite_gradient_fails_with_note() -> None:
    chk = check_grad((rosen, lambda x: np.array([np.nan, 200.0])), X_ROSEN)
    assert not chk.ok and any("non-finite" in n for n in chk.notes)


# ---------------------------------------------------------------------------------------------
# Hessian
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["central", "richardson"])
def test_hessian_pair(method: str) -> None:
    chk = check_hessian((rosen_grad, rosen_hess), X_ROSEN, method=method)
    assert chk.ok and chk.analytic.shape == (2, 2), chk.table()
    np.testing.assert_allclose(chk.analytic, [[402, 400], [400, 200]])

    def bad_hess(x: np.ndarray) -> np.ndarray:
        h = rosen_hess(x)
        h[0, 1] = h[1, 0] = h[0, 1] * (1 + 1e-4)
        return h

    chk = check_hessian((rosen_grad, bad_hess), X_ROSEN, method=method)
    assert not chk.ok and chk.worst in ((0, 1), (1, 0))


def bump01(h: np.ndarray) -> np.ndarray:
    h = h.copy()
    h[0, 2] *= 1 + 1e-4
    h[2, 0] = h[0, 2]
    return h


def flip11(h: np.ndarray) -> np.ndarray:
    h = h.copy()
    h[1, 1] = -h[1, 1]
    return h


@pytest.mark.parametrize("method", ["central", "richardson", "complex", "exact", "auto"])
def test_hessian_kernel(method: str) -> None:
    good = FakeKernel(SMOOTH_EXPR, (x1, x2, x3))
    chk = check_hessian(good, X_SMOOTH, method=method)
    assert chk.ok and chk.hvp_ok, chk.table()
    assert chk.method == ("richardson" if method == "auto" else method)
    assert (chk.rtol, chk.atol) == (HESSIAN_TOLERANCES[chk.method].rtol,
                                    HESSIAN_TOLERANCES[chk.method].atol)
    for fault, worst in ((bump01, {(0, 2), (2, 0)}), (flip11, {(1, 1)})):
        bad = FakeKernel(SMOOTH_EXPR, (x1, x2, x3), hess_fault=fault)
        chk = check_hessian(bad, X_SMOOTH, method=method)
        assert not chk.ok and chk.worst in worst, chk.table()


def test_hessian_directions_and_hvp() -> None:
    good = FakeKernel(SMOOTH_EXPR, (x1, x2, x3))
    chk = check_hessian(good, X_SMOOTH, directions=3)
    assert chk.ok and chk.analytic.shape == (3, 3)
    bad = FakeKernel(SMOOTH_EXPR, (x1, x2, x3), hess_fault=bump01)
    assert not check_hessian(bad, X_SMOOTH, directions=3).ok

    # an hvp bug alone is caught by the HVP check
    class BadHvp(FakeKernel):
        def hvp(self, x: np.ndarray, v: np.ndarray, **data: Any) -> np.ndarray:
            return super().hvp(x, v) * np.array([1.0, 1.0 + 1e-4, 1.0])

    chk = check_hessian(BadHvp(SMOOTH_EXPR, (x1, x2, x3)), X_SMOOTH)
    assert not chk.ok and not chk.hvp_ok
    assert all(chk.abs_err.ravel() <= chk.tol.ravel())
    with pytest.raises(AssertionError, match="Hessian-vector product"):
        assert_hessian_close(BadHvp(SMOOTH_EXPR, (x1, x2, x3)), X_SMOOTH)


def test_hessian_callables_with_hvp_only() -> None:
    hvp = lambda x, v: rosen_hess(x) @ v  # noqa: E731
    chk = check_hessian((rosen_grad, None, hvp), X_ROSEN, directions=4)
    assert chk.ok
    with pytest.raises(ValueError, match="Hessian"):
        check_hessian((rosen_grad, None, hvp), X_ROSEN)


def test_asymmetric_hessian_fails() -> None:
    def hess(x: np.ndarray) -> np.ndarray:
        h = rosen_hess(x)
        h[0, 1] += 1.0
        return h

    chk = check_hessian((rosen_grad, hess), X_ROSEN)
    assert not chk.ok and any("symmetric" in n for n in chk.notes)


def test_hessian_kink() -> None:
    k = FakeKernel(sympy.Abs(x1 - 0.25) * x2 + x2**3, (x1, x2))
    chk = check_hessian(k, np.array([0.25 + 1e-9, 1.5]), method="central")
    assert chk.ok, chk.table()
    assert (0, 0) in chk.kinks and (1, 1) not in chk.kinks
    assert any("non-smooth" in n for n in chk.notes)


# ---------------------------------------------------------------------------------------------
# Formatting and the assertion helpers
# ---------------------------------------------------------------------------------------------


def test_table() -> None:
    chk = check_grad((rosen, off_by(rosen_grad, 1, 1e-3)), X_ROSEN)
    text = chk.table(["x1", "x2"])
    assert isinstance(chk, GradCheck)
    assert "FAILED" in text and "x2" in text and "FAIL" in text.splitlines()[-1]
    assert len(check_grad((rosen, rosen_grad), X_ROSEN).table(max_rows=1).splitlines()) == 5
    h = check_hessian((rosen_grad, rosen_hess), X_ROSEN, names=["a", "b"])
    assert isinstance(h, HessianCheck) and "d2/da db" in h.table()


def test_assert_grad_close_message_names_parameter() -> None:
    k = FakeKernel(SMOOTH_EXPR, (x1, x2, x3), grad_fault=nudge1)
    with pytest.raises(AssertionError) as exc:
        assert_grad_close(k, X_SMOOTH)
    msg = str(exc.value)
    g = k.grad(X_SMOOTH)
    assert msg.startswith("gradient mismatch at x2 (component 1)")
    assert repr(g[1]) in msg and "numeric" in msg
    assert isinstance(assert_grad_close(FakeKernel(SMOOTH_EXPR, (x1, x2, x3)), X_SMOOTH), GradCheck)
    with pytest.raises(AssertionError, match=r"x\[0\]"):
        assert_grad_close((rosen, sign_flip(rosen_grad)), X_ROSEN)
    with pytest.raises(AssertionError, match="at b "):
        assert_grad_close((rosen, sign_flip(rosen_grad, 1)), X_ROSEN, names=["a", "b"])


def test_assert_hessian_close_message() -> None:
    bad = FakeKernel(SMOOTH_EXPR, (x1, x2, x3), hess_fault=flip11)
    with pytest.raises(AssertionError, match=r"Hessian mismatch at d2/dx2 dx2"):
        assert_hessian_close(bad, X_SMOOTH)
    assert assert_hessian_close(FakeKernel(SMOOTH_EXPR, (x1, x2, x3)), X_SMOOTH).ok


def test_complex_step_noise_at_real_x_falls_back() -> None:
    class Noisy(FakeKernel):
        def value_complex(self, xc: np.ndarray, **data: Any) -> complex:
            return super().value_complex(xc) + 1e-17j  # imaginary rounding noise at real x

    k = Noisy(SMOOTH_EXPR, (x1, x2, x3))
    chk = check_grad(k, X_SMOOTH)
    assert chk.ok and chk.method == "richardson"
    assert any("imaginary part" in n for n in chk.notes)
    chk = check_grad(k, X_SMOOTH, method="complex")
    assert not chk.ok and any("imaginary part" in n for n in chk.notes)


# ---------------------------------------------------------------------------------------------
# Against real compiled Kernels
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compiled() -> dict[str, Any]:
    import symgrad as sg

    p1, p2 = sg.params("x1 x2")
    return {
        "rosen": sg.compile(100 * (p2 - p1**2) ** 2 + (1 - p1) ** 2),
        "relu": sg.compile(sg.relu(p1 - 0.5) * p2 + sg.sigmoid(p2)),
    }


@pytest.mark.parametrize("method", ["central", "richardson", "complex", "exact", "auto"])
def test_compiled_rosenbrock_seed_gradient(compiled: dict[str, Any], method: str) -> None:
    f = compiled["rosen"]
    chk = assert_grad_close(f, X_ROSEN, method=method)
    np.testing.assert_array_equal(chk.analytic, G_ROSEN)
    if method in ("complex", "exact"):
        assert chk.max_rel_err <= 1e-13
    assert_hessian_close(f, X_ROSEN, method=method)


def test_compiled_relu_kink(compiled: dict[str, Any]) -> None:
    f = compiled["relu"]
    assert not f.analytic
    chk = check_grad(f, [0.5, 2.0])  # auto -> richardson; x1 sits on the kink
    assert chk.method == "richardson" and chk.ok and chk.kinks == (0,)
    assert any("x1" in n for n in chk.notes)
    assert check_grad(f, [0.9, 2.0]).kinks == ()
    hc = check_hessian(f, [0.5, 2.0])  # on the kink: relu''(0) = 0 is a convention
    assert not hc.ok and hc.unverified == ((0, 0),) and "NOT VERIFIED" in hc.summary()
    assert check_hessian(f, [0.5 + 1e-6, 2.0]).ok  # near it: smaller steps verify the row


def test_check_hessian_at_a_kink_does_not_fail_on_the_hvp():
    x = sg.params("x")
    chk = sg.check_hessian(sg.compile(abs(x - 1)), [1.0])
    assert chk.kinks  # the kink is found and reported...
    assert chk.hvp_ok and "FAIL" not in chk.table()  # ...neither check fails because of it...
    assert any("H @ v only" in n for n in chk.notes)
    # ...and the entry on the kink is not verified, so the verdict is not "ok"
    assert not chk.ok and chk.unverified == ((0, 0),) and "NOT VERIFIED" in chk.summary()
