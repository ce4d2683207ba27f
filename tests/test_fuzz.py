"""Property-based fuzzing: random smooth expression trees, compiled, agree with the checker.

Hypothesis draws expression trees (depth <= 6 over + - * / pow, exp, log, sqrt, sin, cos, tanh,
sigmoid, softplus) with domains kept valid by construction: log and sqrt take ``1 + e**2``,
division is by ``1 + e**2``, exponents are bounded, and any subtree whose magnitude bound
exceeds ``LIMIT`` is squashed through ``tanh(e / bound)``.

Numba compiles cost about a second per kernel function, so ``BATCH`` expressions are compiled
as ONE kernel: the loss is ``sum_k e_k(p_k_0, p_k_1, p_k_2)`` with an independent parameter set
per expression, so each block of the gradient (and each diagonal block of the Hessian) belongs
to one expression, and a failure names it. ``N_BATCHES * BATCH`` expressions per run (300).
Checks per batch: the compiled gradient against the complex step (independent of the derivative
code) and against the exact 50-digit SymPy/mpmath derivative; the compiled Hessian against
Richardson differences of the gradient, and the Hessian-vector product.

The run is deterministic (``derandomize=True``, no example database) and does not shrink:
a shrink step recompiles a kernel, and the failure message already names the expression.
Set SYMGRAD_FUZZ_BATCHES for a longer run.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import pytest
import sympy as sp
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import symgrad as sg
from symgrad.check import check_grad, check_hessian

BATCH = 60
N_BATCHES = int(os.environ.get("SYMGRAD_FUZZ_BATCHES", "5"))
MAX_DEPTH = 6
XMAX = 1.5  # parameters are drawn from [-XMAX, XMAX]
LIMIT = 30.0  # magnitude bound above which a subtree is squashed

# explicit tolerances (the compiled derivative and the oracle both round: the derivative
# expressions of a depth-6 tree cancel, so allow a few more digits than the method defaults)
GRAD_TOL = {"rtol": 1e-9, "atol": 1e-11}
HESS_TOL = {"rtol": 1e-6, "atol": 1e-8}

settings.register_profile(
    "symgrad-fuzz",
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=N_BATCHES,
    phases=(Phase.explicit, Phase.generate),
    suppress_health_check=(HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.large_base_example),
)
FUZZ = settings.get_profile("symgrad-fuzz")

U = sp.symbols("u0 u1 u2", real=True)  # placeholders, replaced per expression
CONSTS = (sp.Rational(1, 2), sp.Integer(2), sp.Integer(-1), sp.Rational(3, 2), sp.Integer(3),
          sp.Rational(-1, 4))

Tree = tuple[sp.Expr, float]  # (expression, bound on |expression| for |u_i| <= XMAX)


def squash(e: sp.Expr, bound: float) -> Tree:
    if bound <= LIMIT:
        return e, bound
    return sp.tanh(e / sp.Integer(math.ceil(bound))), 1.0


UNARY = {
    "exp": lambda e, b: (sp.exp(e), math.exp(b)) if b <= 4 else (sp.exp(sp.tanh(e)), math.e),
    "log": lambda e, b: (sp.log(1 + e**2), math.log1p(b * b)),
    "sqrt": lambda e, b: (sp.sqrt(1 + e**2), math.sqrt(1 + b * b)),
    "sin": lambda e, b: (sp.sin(e), 1.0),
    "cos": lambda e, b: (sp.cos(e), 1.0),
    "tanh": lambda e, b: (sp.tanh(e), 1.0),
    "sigmoid": lambda e, b: (sg.sigmoid(e), 1.0),
    "softplus": lambda e, b: (sg.softplus(e), b + math.log(2)),
}
BINARY = {
    "add": lambda a, c, ba, bc: (a + c, ba + bc),
    "sub": lambda a, c, ba, bc: (a - c, ba + bc),
    "mul": lambda a, c, ba, bc: (a * c, ba * bc),
    "div": lambda a, c, ba, bc: (a / (1 + c**2), ba),
}
POWERS = {"square": 2, "cube": 3, "-1": -1, "3/2": sp.Rational(3, 2)}

# the top levels never stop at a leaf, so even the simplest example is a real composition
TOP_KINDS = ("binary", "unary", "binary", "pow", "unary")
MID_KINDS = ("binary", "unary", "param", "pow", "const", "unary", "binary", "param")


@st.composite
def trees(draw: Any, depth: int = MAX_DEPTH) -> Tree:
    """A random expression in U with a bound on its magnitude."""
    if depth == 0:
        kind = draw(st.sampled_from(("param", "param", "const")))
    else:
        kind = draw(st.sampled_from(TOP_KINDS if depth >= MAX_DEPTH - 1 else MID_KINDS))
    if kind == "param":
        return draw(st.sampled_from(U)), XMAX
    if kind == "const":
        c = draw(st.sampled_from(CONSTS))
        return c, float(abs(c))
    if kind == "unary":
        op = draw(st.sampled_from(sorted(UNARY)))
        return squash(*UNARY[op](*draw(trees(depth - 1))))
    if kind == "pow":
        p = POWERS[draw(st.sampled_from(sorted(POWERS)))]
        e, b = draw(trees(depth - 1))
        if p == -1:  # keep the base away from zero
            return (1 + e**2) ** -1, 1.0
        if p == sp.Rational(3, 2):
            return squash((1 + e**2) ** p, (1 + b * b) ** 1.5)
        return squash(e**p, b**p)
    op = draw(st.sampled_from(sorted(BINARY)))
    a, ba = draw(trees(depth - 1))
    c, bc = draw(trees(depth - 1))
    return squash(*BINARY[op](a, c, ba, bc))


def depth(e: sp.Basic) -> int:
    return 0 if not e.args else 1 + max(depth(a) for a in e.args)


def build_batch(exprs: list[sp.Expr]) -> tuple[sp.Expr, list[sp.Expr]]:
    """sum_k e_k(p_k_0, p_k_1, p_k_2): independent parameters per expression."""
    own = []
    for k, e in enumerate(exprs):
        ps = sg.params(" ".join(f"p{k}_{j}" for j in range(len(U))))
        own.append(e.xreplace(dict(zip(U, ps, strict=True))))
    return sp.Add(*own), own


def blocks(params: tuple[str, ...]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for i, name in enumerate(params):
        out.setdefault(int(name[1:].split("_")[0]), []).append(i)
    return out


def first_failures(bad: np.ndarray, params: tuple[str, ...], own: list[sp.Expr],
                   limit: int = 3) -> str:
    ks = sorted({int(params[i][1:].split("_")[0]) for i in np.flatnonzero(bad)})
    return "\n".join(f"  e{k} = {own[k]}" for k in ks[:limit])


COUNT = {"expressions": 0, "batches": 0}


@pytest.fixture(scope="module", autouse=True)
def _report_count() -> Any:
    yield
    # at least 300 expressions went through the checker (when the test ran to completion)
    if COUNT["batches"] == N_BATCHES:
        assert COUNT["expressions"] >= BATCH * N_BATCHES


@pytest.mark.slow
@FUZZ
@given(exprs=st.lists(trees(), min_size=BATCH, max_size=BATCH),
       seed=st.integers(0, 2**32 - 1))
def test_compiled_derivatives_agree_with_checker(exprs: list[Tree], seed: int) -> None:
    es = [e for e, _ in exprs]
    loss, own = build_batch(es)
    f = sg.compile(loss)
    assert f.analytic
    x = np.random.default_rng(seed).uniform(-XMAX, XMAX, f.n_params)

    g = check_grad(f, x, **GRAD_TOL)  # auto: complex step for an analytic kernel
    # the complex kernel must be exactly real at a real x, or the complex step is noise
    assert g.method == "complex", "value_complex is not real at a real x (printer bug: e.g. " \
        "numba's complex z**n / cmath on float constants):\n" + "\n".join(g.notes)
    bad = g.abs_err > g.tol
    assert g.ok, "gradient vs complex step:\n" + first_failures(bad, f.params, own) + "\n" + \
        g.table(max_rows=8)

    ge = check_grad(f, x, method="exact", **GRAD_TOL)
    bad = ge.abs_err > ge.tol
    assert ge.ok, "gradient vs exact:\n" + first_failures(bad, f.params, own) + "\n" + \
        ge.table(max_rows=8)

    h = check_hessian(f, x, **HESS_TOL)  # Richardson differences of the gradient, and the HVP
    bad = (h.abs_err > h.tol).any(axis=0)
    assert h.ok, "Hessian vs Richardson:\n" + first_failures(bad, f.params, own) + "\n" + \
        h.table(max_rows=8)

    # the Hessian of a sum of independent expressions is block diagonal
    H = h.analytic
    mask = np.ones_like(H, dtype=bool)
    for idx in blocks(f.params).values():
        mask[np.ix_(idx, idx)] = False
    assert np.all(H[mask] == 0.0)

    COUNT["expressions"] += len(es)
    COUNT["batches"] += 1


ELEMENTARY = {"sigmoid": lambda z: 1 / (1 + np.exp(-z)), "softplus": lambda z: np.log1p(np.exp(z))}


@pytest.mark.slow  # checks the generator that only the slow fuzz test above uses: runs with it
def test_generator_respects_domains() -> None:
    """Every generated tree stays finite on the whole parameter box (sampled)."""
    rng = np.random.default_rng(0)
    seen: list[sp.Expr] = []

    @settings(FUZZ, max_examples=40)
    @given(trees())
    def collect(t: Tree) -> None:
        seen.append(t[0])

    collect()
    assert len(seen) == 40
    for e in seen:
        fn = sp.lambdify(U, e, [ELEMENTARY, "numpy"])
        pts = rng.uniform(-XMAX, XMAX, (64, len(U)))
        vals = np.array([complex(fn(*p)) for p in pts])
        assert np.all(np.isfinite(vals)) and np.all(vals.imag == 0), e
