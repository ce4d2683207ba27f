"""The printer: strict, Numba-safe scalar code with float literals, lazy Piecewise, named errors."""

from __future__ import annotations

import io
import math
import tokenize

import numpy as np
import pytest
import sympy as sp

import symgrad as sg
from symgrad.backend.numba.printer import (
    ComplexPrinter,
    ScalarPrinter,
    UnsupportedError,
    float_literal,
)

x = sp.Symbol("x", real=True)
y = sp.Symbol("y", real=True)
NAMES = {x: "p_x", y: "p_y"}


def pr(e) -> str:
    return ScalarPrinter(NAMES).doprint(e)


HELPERS = {"_sign": lambda z: (z > 0) - (z < 0) + 0.0, "_relu": lambda z: max(z, 0.0),
           "_heaviside": lambda z, h0: 1.0 if z > 0 else (0.0 if z < 0 else h0),
           "_floor": math.floor, "_ceil": math.ceil}


def run(code: str, **values) -> float:
    env = {"math": math, "p_x": values.get("x", 0.0), "p_y": values.get("y", 0.0), **HELPERS}
    return eval(code, env)  # the printed text is an expression over p_x, p_y, math, helpers


@pytest.mark.parametrize(("expr", "text"), [
    (sp.Rational(1, 4) + x, "p_x + 0.25"),
    (3 * x, "3.0*p_x"),
    (x**2, "p_x**2"),
    (1 / x, "(1.0/p_x)"),
    (sp.sqrt(x), "math.sqrt(p_x)"),
    (1 / sp.sqrt(x), "(1.0/math.sqrt(p_x))"),
    (sp.exp(-x), "math.exp(-p_x)"),
    (sp.pi * x, "3.141592653589793*p_x"),
])
def test_simple_forms(expr, text):
    assert pr(expr) == text


@pytest.mark.parametrize("expr", [
    x**3 - 2 * x * y / 3, x**-2 + y**sp.Rational(-1, 3), (x**2 + 1) ** sp.Float(1.5),
    sp.atan2(y, x) + sp.erf(x) - sp.tanh(y), sp.Max(x, y, 1) - sp.Min(x, 2 * y),
    sp.Abs(x - y) + sp.sign(x), 2**x + sp.E**y, sp.log(x**2 + 1) * sp.cos(y),
])
def test_printed_code_evaluates_like_sympy(expr):
    for xv, yv in [(0.7, 1.3), (1.9, 0.4), (2.5, 3.0)]:
        want = float(expr.subs({x: xv, y: yv}).evalf(30))
        assert run(pr(expr), x=xv, y=yv) == pytest.approx(want, rel=1e-14, abs=1e-300)


def test_literals_are_floats():
    code = pr(x / 3 + sp.Integer(10) ** 30 * y + sp.Rational(2, 7))
    assert "1e+30" in code and repr(2 / 7) in code and repr(1 / 3) in code
    nums = [t.string for t in tokenize.generate_tokens(io.StringIO(code).readline)
            if t.type == tokenize.NUMBER]
    assert nums and all("." in n or "e" in n for n in nums), nums  # no integer literals
    assert float_literal(float("nan")) == "math.nan"
    assert float_literal(float("-inf")) == "(-math.inf)"


def test_piecewise_is_lazy_nested_if_else():
    pw = sp.Piecewise((sp.log(x), x > 0), (sp.sqrt(-x), x < -1), (0, True))
    code = pr(pw)
    assert "select" not in code and code.count(" if ") == 2
    assert run(code, x=math.e) == pytest.approx(1.0)
    assert run(code, x=-4.0) == 2.0
    assert run(code, x=-0.5) == 0.0  # neither log(-0.5) nor sqrt(0.5)... is evaluated eagerly
    assert run(code, x=0.0) == 0.0


def test_piecewise_without_a_true_branch_is_nan_outside():
    code = pr(sp.Piecewise((x, x > 0)))
    assert math.isnan(run(code, x=-1.0))
    assert run(code, x=2.0) == 2.0


def test_kink_helpers_and_heaviside_at_zero():
    assert pr(sp.Heaviside(x)) == "_heaviside(p_x, 0.5)"
    assert pr(sp.Heaviside(x, 0)) == "_heaviside(p_x, 0.0)"
    assert pr(sg.relu(x)) == "_relu(p_x)"
    assert pr(sp.floor(x)) == "_floor(p_x)"
    assert pr(sp.Max(x, y, 0)).count("max(") == 2  # binary max: Numba has no n-ary max of floats


@pytest.mark.parametrize("expr", [sp.besselj(0, x), sp.Function("f")(x), sp.gamma(x),
                                  sp.erfc(x), sp.asinh(x), sp.loggamma(x)])
def test_unsupported_function_is_named(expr):
    with pytest.raises(UnsupportedError, match=type(expr).__name__):
        pr(expr + 1)


def test_unknown_symbol_is_an_error_not_a_name():
    z = sp.Symbol("__import__('os')", real=True)
    with pytest.raises(UnsupportedError, match="no value"):
        pr(x + z)


def test_complex_printer_uses_cmath_and_refuses_kinks():
    cp = ComplexPrinter(NAMES)
    assert cp.doprint(sp.exp(x) * sp.sin(y)) == "cmath.exp(p_x)*cmath.sin(p_y)"
    with pytest.raises(UnsupportedError):
        cp.doprint(sp.Piecewise((x, x > 0), (0, True)))
    with pytest.raises(UnsupportedError):
        cp.doprint(sp.Max(x, y))


def test_stable_forms_of_the_symgrad_functions():
    assert pr(sg.sigmoid(x)) == "_sigmoid(p_x)"
    assert pr(sg.softplus(x)) == "_softplus(p_x)"
    p = ScalarPrinter(NAMES)
    assert p.doprint(sg.logsumexp(x, y, 0)) == "_logsumexp3(p_x, p_y, 0.0)"
    assert p.lse_arities == {3}


def test_sigmoid_derivative_keeps_its_relative_precision_where_it_saturates():
    """s * (1 - s) cancelled where s rounds to 1: sigmoid'(30) 1e-3 off, sigmoid'(40) = 0."""
    import mpmath

    a = sg.params("a_sat")
    f = sg.compile(sg.sigmoid(a))
    for z in (10.0, 30.0, 40.0, -40.0, 700.0):
        with mpmath.workdps(50):
            e = mpmath.exp(-abs(mpmath.mpf(z)))
            exact = float(e / (1 + e) ** 2)
        assert f.grad([z])[0] == pytest.approx(exact, rel=1e-15, abs=0.0), z
    fs = sg.compile(sg.softplus(a))  # softplus'' = sigmoid'
    assert fs.hessian([40.0])[0, 0] == pytest.approx(4.248354255291589e-18, rel=1e-15)


def test_binary_max_chains_print_flat_and_are_refused_in_complex():
    from symgrad.ir.functions import Max2, Min2

    zs = sp.symbols("z0:300", real=True)
    names = {z: f"p_z{k}" for k, z in enumerate(zs)}
    chain = zs[0]
    for z in zs[1:]:
        chain = Max2(chain, z)  # 299 levels deep: printing recursively would overflow
    text = ScalarPrinter(names).doprint(chain)
    assert text.startswith("max(p_z0, p_z1, p_z2,") and text.count("max(") == 1
    assert eval(text, {f"p_z{k}": float((k * 37) % 101) for k in range(300)}) == 100.0
    assert pr(Min2(Max2(x, y), x)) == "min(max(p_x, p_y), p_x)"
    assert Max2(x, x) == x and Max2(sp.Integer(2), sp.Integer(3)) == 3
    with pytest.raises(UnsupportedError):
        ComplexPrinter(NAMES).doprint(Max2(x, y))


def test_a_power_with_a_data_or_parameter_exponent_has_a_finite_derivative_at_zero():
    # d/da a**y was printed y*a**y/a: 0/0 = NaN at a = 0, where it is y*0**(y-1)
    a, b = sg.params("a b")
    y = sg.data("y")
    f = sg.compile(sg.mean(a**y) + b)
    np.testing.assert_array_equal(f.grad([0.0, 1.0], y=np.array([1.0, 2.0])), [0.5, 1.0])
    np.testing.assert_array_equal(f.grad([0.0, 1.0], y=np.array([3.0, 2.0])), [0.0, 1.0])
    assert sg.compile(a**b).grad([0.0, 1.0])[0] == 1.0
    W, X = sg.params("W", shape=(3,)), sg.data("X", shape=(3,))
    g = sg.compile(sg.mean(sg.sum(W**X, axis=0)), fuse=False)
    np.testing.assert_array_equal(g.grad([0.0, 0.0, 2.0], X=np.array([[1.0, 2.0, 3.0]])),
                                  [1.0, 0.0, 12.0])
