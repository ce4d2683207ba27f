"""One kink semantics on every path: the same non-smooth loss, compiled as a scalar loss and as
an array loss (an array term added routes it to the array path), has the same derivatives at its
kinks. ``Max``/``Min`` of n arguments is the chain ``Max(Max(a, b), c)``: the tie rule applies at
each link, so the shares at a three-way tie are 1/4, 1/4, 1/2 and sum to 1.
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

import symgrad as sg

# these tests are of the array code: small losses do not fuse into one sample loop here
pytestmark = pytest.mark.usefixtures("array_code")

NAMES = ("a", "b", "c", "d", "e", "f", "g", "h", "k", "l", "m", "q")
#: every kink at once: three-way ties of a max and a min, abs and relu at 0, two-way ties
AT = dict(a=1.0, b=1.0, c=1.0, d=0.0, e=0.0, f=0.3, g=0.3, h=-0.2, k=-0.2, l=0.7, m=0.7, q=0.7)


def _loss(p):
    return (sg.max(p["a"], p["b"], p["c"]) + sg.abs(p["d"]) + sg.relu(p["e"])
            + sg.max(p["f"], p["g"]) + sp.Min(p["h"], p["k"]) + sp.Min(p["l"], p["m"], p["q"]))


@pytest.fixture(scope="module")
def kernels():
    p = dict(zip(NAMES, sg.params(" ".join(NAMES)), strict=True))
    W = sg.params("W", shape=(2,))
    scalar = sg.compile(_loss(p))
    array = sg.compile(_loss(p) + sg.sum(W**2))
    return scalar, array


def _x(kernel, w=(0.5, -1.5)):
    names = [str(q) for q in kernel.params]
    return np.array([AT[n] for n in names if n in AT] + list(w[: kernel.n_params - len(AT)]))


def _split(kernel, vec) -> dict[str, float]:
    names = [str(q) for q in kernel.params]
    return {n: float(v) for n, v in zip(names, vec[: len(NAMES)], strict=False) if n in AT}


def test_array_path_is_taken(kernels):
    scalar, array = kernels
    assert type(scalar) is not type(array)
    assert [str(q) for q in array.params][: len(NAMES)] == list(NAMES)


def test_same_derivatives_at_the_kinks_on_both_paths(kernels):
    scalar, array = kernels
    xs, xa = _x(scalar), _x(array)
    vs, gs = scalar.value_and_grad(xs)
    va, ga = array.value_and_grad(xa)
    assert va == pytest.approx(vs + 0.5**2 + 1.5**2, rel=1e-14)
    ds, da = _split(scalar, gs), _split(array, ga)
    assert ds == da
    np.testing.assert_allclose(ga[len(NAMES):], 2 * xa[len(NAMES):], rtol=1e-15)


def test_three_way_ties_share_one_derivative(kernels):
    for kernel in kernels:
        d = _split(kernel, kernel.grad(_x(kernel)))
        for three in (("a", "b", "c"), ("l", "m", "q")):
            shares = sorted(d[n] for n in three)
            assert shares == [0.25, 0.25, 0.5], (kernel, three, shares)
        assert d["f"] + d["g"] == 1.0 and d["f"] == d["g"] == 0.5
        assert d["h"] + d["k"] == 1.0 and d["h"] == d["k"] == 0.5
        assert d["d"] == 0.0 and d["e"] == 0.0  # abs'(0) and relu'(0) under the default policy


def test_hessians_at_the_kinks_agree(kernels):
    scalar, array = kernels
    rng = np.random.default_rng(3)
    v = rng.standard_normal(len(NAMES) + 2)
    hs = scalar.hvp(_x(scalar), v[: len(NAMES)])
    ha = array.hvp(_x(array), v)
    np.testing.assert_array_equal(ha[: len(NAMES)], hs)
    np.testing.assert_allclose(ha[len(NAMES):], 2 * v[len(NAMES):], rtol=1e-15)


def test_policy_applies_on_both_paths():
    p = dict(zip(NAMES[:3], sg.params("a b c"), strict=True))
    W = sg.params("W", shape=(2,))
    pol = sg.KinkPolicy(tie=0.25)
    loss = sg.max(p["a"], p["b"], p["c"])
    gs = sg.compile(loss, policy=pol).grad(np.ones(3))
    ga = sg.compile(loss + sg.sum(W**2), policy=pol).grad(np.r_[np.ones(3), 0.0, 0.0])
    np.testing.assert_array_equal(ga[:3], gs)
    np.testing.assert_array_equal(np.sort(gs), [0.0625, 0.0625, 0.25])  # tie * tie, tie


def test_the_fused_pass_has_the_same_derivatives_at_the_kinks(kernels):
    """A small array loss fused into one sample loop: the same shares as the other two paths."""
    _, array = kernels
    p = dict(zip(NAMES, sg.params(" ".join(NAMES)), strict=True))
    W = sg.params("W", shape=(2,))
    fused = sg.compile(_loss(p) + sg.sum(W**2), fuse=True)
    assert type(fused).__name__ == "FusedKernel"
    xf = _x(fused)
    np.testing.assert_array_equal(fused.grad(xf), array.grad(_x(array)))
    v = np.random.default_rng(3).standard_normal(len(NAMES) + 2)
    np.testing.assert_array_equal(fused.hvp(xf, v), array.hvp(_x(array), v))
