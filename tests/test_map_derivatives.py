"""A Map's partial derivatives and tangents come from one Builder program per Map (reverse
sweep for all arguments at once, forward sweep for tangents), with the kinks through the same
``local_derivative`` as scalar losses: exact against SymPy, policy-aware at kinks, no swell."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

import symgrad as sg
from symgrad.ad.array import _partials, _tangent, gradients, tangents, topo
from symgrad.ad.derive import KinkPolicy
from symgrad.ir.functions import relu
from symgrad.ir.graph import Leaf, Map, ph
from symgrad.ir.minmax import Max2, Min2

a, b, c = ph(0), ph(1), ph(2)
SMOOTH = [
    a * sp.sin(a * b),
    sp.exp(sp.sin(a) * sp.cos(a)) / (1 + a**2),
    sp.log(1 + sp.exp(-a * b)) + c**3 / (1 + b**2),
    a * b * c * sp.tanh(a + b) * sp.sqrt(1 + c**2),
    (a - b) ** 2 * sp.exp(-c) + a ** b,
]


def _numeric(e, point):
    return float(e.xreplace(point).evalf(30))


@pytest.mark.parametrize("expr", SMOOTH, ids=str)
def test_partials_and_tangents_equal_sympy_diff(expr):
    rng = np.random.default_rng(7)
    n = max(int(s.name[2:]) for s in expr.free_symbols) + 1
    ds = _partials(expr, n, KinkPolicy())
    for _ in range(3):
        point = {ph(k): sp.Float(v) for k, v in enumerate(rng.uniform(0.3, 1.7, n))}
        seeds = {ph(n + k): sp.Float(v) for k, v in enumerate(rng.standard_normal(n))}
        for k, d in enumerate(ds):
            want = _numeric(sp.diff(expr, ph(k)), point)
            assert _numeric(d, point) == pytest.approx(want, rel=1e-12, abs=1e-12)
        want_t = sum(_numeric(sp.diff(expr, ph(k)), point) * float(seeds[ph(n + k)])
                     for k in range(n))
        got_t = _numeric(_tangent(expr, n, tuple(range(n)), KinkPolicy()), {**point, **seeds})
        assert got_t == pytest.approx(want_t, rel=1e-12, abs=1e-12)


def test_tangent_of_some_arguments_only():
    expr = a * sp.exp(b) + c * b
    t = _tangent(expr, 3, (1,), KinkPolicy())  # only b moves, along ph(3)
    assert sp.simplify(t - (a * sp.exp(b) + c) * ph(3)) == 0


def test_kinks_follow_the_policy():
    pol = KinkPolicy(relu=0.75, abs=0.5, tie=0.25)
    zero = {a: 0, b: 0, c: 0}
    (dr,) = _partials(relu(a), 1, pol)
    (dabs,) = _partials(sp.Abs(a), 1, pol)
    assert float(dr.xreplace(zero)) == 0.75
    assert float(dabs.xreplace(zero)) == 0.5
    shares = [d.xreplace(zero) for d in _partials(Max2(Max2(a, b), c), 3, pol)]
    assert shares == [sp.Rational(1, 16), sp.Rational(1, 16), sp.Rational(1, 4)]
    shares = [d.xreplace(zero) for d in _partials(Min2(Min2(a, b), c), 3, KinkPolicy())]
    assert shares == [sp.Rational(1, 4), sp.Rational(1, 4), sp.Rational(1, 2)]


def test_array_max_tie_shares_match_the_scalar_path():
    p = sg.params("p q r")
    W = sg.params("W", shape=(2,))
    scalar = sg.compile(sg.max(*p))
    array = sg.compile(sg.max(*p) + sg.sum(W**2))
    gs = scalar.grad(np.ones(3))
    ga = array.grad(np.r_[np.ones(3), 0.5, -1.0])
    np.testing.assert_array_equal(ga[:3], gs)
    np.testing.assert_array_equal(np.sort(gs), [0.25, 0.25, 0.5])
    np.testing.assert_array_equal(ga[3:], [1.0, -2.0])


def _ops(nodes):
    return sum(sp.count_ops(n.expr) for n in topo([n for n in nodes if n is not None])
               if isinstance(n, Map))


def test_no_swell_on_a_long_product():
    """The Hessian-vector product of a 12-factor product (one Map with 12 arguments): one
    forward sweep over the shared program, where per-argument chain rules gave 1,451 ops."""
    x = sg.params("x", shape=(12,))
    loss = x[0]
    for k in range(1, 12):
        loss = loss * x[k]
    leaf = Leaf("param", "x", (12,))
    g = gradients(loss, [leaf])
    h = tangents(g, {leaf: Leaf("param", "v", (12,))})
    assert _ops(g) <= 131
    assert _ops(h) < 1000


def test_one_argument_map_keeps_the_chain_rule_factored():
    """exp(sin(w)*cos(w))/(1+w**2): the forward sweep factors exp(...) out where w fans out
    (24 ops); the expanded reverse sweep repeats it per use of w (32 ops)."""
    w = sg.params("w", shape=(5,))
    (g,) = gradients(sg.sum(sg.exp(sg.sin(w) * sg.cos(w)) / (1 + w**2)),
                     [Leaf("param", "w", (5,))])
    assert _ops([g]) <= sp.count_ops(sp.diff(sp.exp(sp.sin(a) * sp.cos(a)) / (1 + a**2), a))


def test_kinks_inside_a_piecewise_follow_the_policy_on_both_paths():
    """A Piecewise is opaque to the Builder: its branches were differentiated by sp.diff, which
    ignored the policy (abs'(0) = sign(0) = 0, relu'(0) = 0) on the scalar path, and on the
    array path once its Maps went through the Builder."""
    x, y = sg.params("x y")
    W = sg.params("W", shape=(2,))
    pol = sg.KinkPolicy(abs=0.5, relu=0.75)
    loss = sp.Piecewise((sg.abs(x) + sg.relu(y), x + y > -1), (x * y, True))
    gs = sg.compile(loss, policy=pol).grad(np.zeros(2))
    ga = sg.compile(loss + sg.sum(W**2), policy=pol).grad(np.zeros(4))
    np.testing.assert_array_equal(gs, [0.5, 0.75])
    np.testing.assert_array_equal(ga, [0.5, 0.75, 0.0, 0.0])
