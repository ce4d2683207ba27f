"""The shared table of test cases: every compiled stage is checked against the same losses.

Each :class:`Case` is a name, a builder returning ``(loss, params)``, a seeded input sampler and a
tolerance (design.md section 6). The independent oracle is ``sympy.diff`` of the loss after the
symgrad functions are rewritten into SymPy primitives (``relu -> Max(u, 0)``, ``sigmoid ->
1/(1 + exp(-u))``...), lambdified into 40-digit mpmath, so only the kernel's own rounding counts.
At kinks the oracle is written by hand from the documented policy (relu'(0) = 0, d|x|/dx(0) = 0,
a Max/Min tie splits 1/2-1/2, second derivatives of kinks are 0), never taken from lambdify.

>>> [c.name for c in CASES][:3]
['rosenbrock', 'poly_cubic', 'poly_high']
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import mpmath
import numpy as np
import sympy as sp

import symgrad as sg
from symgrad.ir.functions import expm1, log1p, logsumexp, relu, sigmoid, softplus
from symgrad.lang.symbols import Mean, Sum

RTOL = 1e-12  #: default relative tolerance (max-abs error / max-abs of the oracle array)
N_POINTS = 3  #: seeded random points per case
N_SAMPLES = 5  #: samples per data column in the losses with reductions
DPS = 40  #: working precision of the oracle


@dataclass(frozen=True)
class Kink:
    """A point on a kink with value, gradient and Hessian written by hand from the policy."""

    x: tuple[float, ...]
    value: float
    grad: tuple[float, ...]
    hess: tuple[tuple[float, ...], ...]


@dataclass(frozen=True)
class Case:
    """One loss of the table: ``build() -> (loss, params)``, ``sample(rng) -> x``."""

    name: str
    build: Callable[[], tuple[sp.Expr, tuple]]
    sample: Callable[[np.random.Generator], np.ndarray]
    rtol: float = RTOL
    data: Callable[[np.random.Generator], dict[str, np.ndarray]] | None = None
    kinks: tuple[Kink, ...] = field(default_factory=tuple)
    group: str = "smooth"  #: cases of a group are compiled together as one kernel


def uniform(lo: float, hi: float, n: int) -> Callable[[np.random.Generator], np.ndarray]:
    return lambda rng: rng.uniform(lo, hi, n)


def boxes(*bounds: tuple[float, float]) -> Callable[[np.random.Generator], np.ndarray]:
    return lambda rng: np.array([rng.uniform(lo, hi) for lo, hi in bounds])


def away_from_integers(n: int, lo: float = -3.0, hi: float = 3.0):
    """Points whose coordinates sit at least 0.1 from an integer (floor/ceil are flat there)."""
    def sample(rng):
        z = rng.uniform(lo, hi, n)
        return np.floor(z) + 0.1 + 0.8 * (z - np.floor(z))
    return sample


def _p(names: str):
    return sg.params(names)


# -- builders ----------------------------------------------------------------------------------

def _rosenbrock():
    x1, x2 = _p("x1 x2")
    return 100 * (x2 - x1**2) ** 2 + (1 - x1) ** 2, (x1, x2)


def _poly_cubic():
    x1, x2, x3 = _p("x1 x2 x3")
    return x1**3 * x2 - 2 * x1 * x2**2 + 5 * x3**4 - x1 * x2 * x3 + 7, (x1, x2, x3)


def _poly_high():
    x1, x2 = _p("x1 x2")
    loss = x1**7 / 7 - 3 * x1**4 * x2 + (x1 + 2 * x2) ** 5 / 10 + sp.Rational(1, 3) * x2**3
    return loss, (x1, x2)


def _quadratic_form():
    xs = _p("q0 q1 q2 q3 q4 q5 q6 q7")
    rng = np.random.default_rng(7)
    a = rng.integers(-5, 6, (8, 8))
    b = rng.integers(-5, 6, 8)
    e = sum(sp.Rational(int(a[i, j]), 4) * xs[i] * xs[j] for i in range(8) for j in range(8))
    return e + sum(int(b[i]) * xs[i] for i in range(8)), xs


def _exp_log():
    x1, x2 = _p("x1 x2")
    return sp.exp(x1 * x2) + sp.log(x1**2 + x2**2 + 1), (x1, x2)


def _trig():
    x1, x2 = _p("x1 x2")
    return sp.sin(x1) * sp.cos(x2) + sp.tan(x1 * x2 / 4), (x1, x2)


def _hyperbolic():
    x1, x2, x3 = _p("x1 x2 x3")
    return sp.tanh(x1 + 2 * x2) * x3 + sp.sinh(x1) / sp.cosh(x2), (x1, x2, x3)


def _sqrt_positive():
    x1, x2 = _p("x1 x2")
    return sp.sqrt(x1**2 + x2**2 + 1) + x1 * sp.sqrt(x2) + 1 / sp.sqrt(x2), (x1, x2)


def _log_pow():
    x1, x2 = _p("x1 x2")
    return sp.log(x1) * x2 + x1**x2 + (x1**2 + 1) ** sp.Float(1.5), (x1, x2)


def _rational():
    x1, x2 = _p("x1 x2")
    return x1 / (1 + x2**2) + 1 / (x1**2 + x2**2 + 1) - x1 / 3, (x1, x2)


def _inverse_trig():
    x1, x2 = _p("x1 x2")
    return sp.asin(x1 / 2) + sp.acos(x2 / 3) + sp.atan(x1 * x2), (x1, x2)


def _atan2():
    x1, x2 = _p("x1 x2")
    return sp.atan2(x2, x1) + sp.atan2(x1 * x2, 1 + x1**2), (x1, x2)


def _erf():
    x1, x2, x3 = _p("x1 x2 x3")
    return sp.erf(x1 * x2) + x3 * sp.erf(x1 - x3), (x1, x2, x3)


def _sigmoid():
    x1, x2, x3 = _p("x1 x2 x3")
    return sigmoid(x1 * x2 - x3) + sp.log(sigmoid(x1)) + sigmoid(-30 * x3), (x1, x2, x3)


def _softplus():
    x1, x2, x3 = _p("x1 x2 x3")
    return softplus(x1 - 2 * x2) * x3 + softplus(-x1**2) + softplus(20 * x2), (x1, x2, x3)


def _logsumexp():
    x1, x2, x3 = _p("x1 x2 x3")
    return logsumexp(x1, x2, x3) + logsumexp(2 * x1, -x2) - sg.log_softmax([x1, x2, x3])[0], \
        (x1, x2, x3)


def _log1p_expm1():
    x1, x2 = _p("x1 x2")
    return log1p(x1**2) + expm1(x2 * x1) + log1p(sp.exp(-x2)), (x1, x2)


def _product_many():
    xs = _p("m0 m1 m2 m3 m4")
    return sp.Mul(*[xs[k % 5] + sp.Rational(k + 1, 10) for k in range(20)]), xs


def _product_sines():
    xs = _p("s0 s1 s2 s3")
    return sp.Mul(*[sp.sin(xs[k % 4] + sp.Rational(k, 7)) for k in range(16)]), xs


def _deep_tanh():
    x1, x2 = _p("x1 x2")
    t = x1
    for k in range(12):
        t = sp.tanh(t * x2 + sp.Rational(k, 10))
    return t, (x1, x2)


def _deep_mixed():
    x1, x2 = _p("x1 x2")
    loss = sp.sin(sp.exp(sp.tanh(sp.cos(x1 * x2)))) + sp.log(1 + sp.exp(sp.sin(x1 + x2**2)))
    return loss, (x1, x2)


def _logistic_map():
    x1, x2 = _p("x1 x2")
    t = sigmoid(x1)
    for _ in range(4):
        t = (3 + x2) * t * (1 - t)
    return t, (x1, x2)


def _relu():
    x1, x2 = _p("x1 x2")
    return relu(x1 - 1) ** 2 + x2 * relu(x1 + x2) + relu(x2) * x1, (x1, x2)


def _abs():
    x1, x2, x3 = _p("x1 x2 x3")
    return sp.Abs(x1 - x2) * x3 + sp.Abs(x1) ** 3 + x3**2, (x1, x2, x3)


def _max_min():
    x1, x2, x3 = _p("x1 x2 x3")
    return sp.Max(x1, x2 * x3) + sp.Min(x1**2, x2) + x1 * x3, (x1, x2, x3)


def _piecewise():
    x1, x2 = _p("x1 x2")
    pw = sp.Piecewise((x1**2 * x2, x1 < 0), (sp.sin(x1) * x2, x1 < 2), (x1 * x2**2, True))
    # the sqrt branch would fail for x1 <= 0 if it were evaluated there: it must stay lazy
    lazy = sp.Piecewise((sp.sqrt(x1) * x2, x1 > 0), (-x1**3, True))
    return pw + lazy + x2**2, (x1, x2)


def _floor_ceiling():
    x1, x2 = _p("x1 x2")
    return sp.floor(x1) * x2**2 + sp.ceiling(x2) * x1 + x1**2 * x2, (x1, x2)


def _sign_heaviside():
    x1, x2 = _p("x1 x2")
    return sp.sign(x1) * x2**2 + sp.Heaviside(x2, 0) * x1**3 + x1 * x2, (x1, x2)


def _mse_l2():
    a, b, c = _p("a b c")
    t, y = sg.data("t y")
    loss = sg.mean((a * t**2 + b * t + c - y) ** 2) + sp.Rational(1, 1000) * (a**2 + b**2)
    return loss, (a, b, c)


def _rmse_logistic():
    a, b = _p("a b")
    t, y = sg.data("t y")
    nll = sg.sum(softplus(a * t + b) - y * (a * t + b))
    return sp.sqrt(sg.mean((a * t + b - y) ** 2)) + nll / 10 + sp.sin(a) * b, (a, b)


def _data_ty(rng):
    return {"t": rng.uniform(-2, 2, N_SAMPLES), "y": rng.uniform(-1, 1, N_SAMPLES)}


CASES: tuple[Case, ...] = (
    Case("rosenbrock", _rosenbrock, uniform(-2, 2, 2)),
    Case("poly_cubic", _poly_cubic, uniform(-2, 2, 3)),
    Case("poly_high", _poly_high, uniform(-1.5, 1.5, 2)),
    Case("quadratic_form_8", _quadratic_form, uniform(-3, 3, 8)),
    Case("exp_log", _exp_log, uniform(-1.5, 1.5, 2)),
    Case("trig", _trig, uniform(-2, 2, 2)),
    Case("hyperbolic", _hyperbolic, uniform(-2, 2, 3)),
    Case("sqrt_positive", _sqrt_positive, boxes((-2, 2), (0.2, 3))),
    Case("log_pow", _log_pow, boxes((0.2, 3), (-2, 2))),
    Case("rational", _rational, uniform(-2, 2, 2)),
    Case("inverse_trig", _inverse_trig, boxes((-1.8, 1.8), (-2.5, 2.5))),
    Case("atan2", _atan2, boxes((0.3, 2), (-2, 2))),
    Case("erf", _erf, uniform(-1.5, 1.5, 3)),
    Case("sigmoid", _sigmoid, uniform(-3, 3, 3)),
    Case("softplus", _softplus, uniform(-3, 3, 3)),
    Case("logsumexp", _logsumexp, uniform(-3, 3, 3)),
    Case("log1p_expm1", _log1p_expm1, uniform(-1, 1, 2)),
    Case("product_20_factors", _product_many, uniform(-1, 1, 5)),
    Case("product_16_sines", _product_sines, uniform(-2, 2, 4)),
    Case("deep_tanh_12", _deep_tanh, uniform(-1, 1, 2)),
    Case("deep_mixed", _deep_mixed, uniform(-1.5, 1.5, 2)),
    Case("logistic_map_4", _logistic_map, boxes((-1, 1), (0.2, 0.8))),
    Case("relu", _relu, uniform(-3, 3, 2), group="kinks", kinks=(
        # x1 + x2 = 0 and x2 = 0 are kinks of relu(x1 + x2) and relu(x2); relu(x1-1)**2 is C1
        Kink((0.5, -0.5), 0.0, (0.0, 0.0), ((0.0, 0.0), (0.0, 0.0))),
        Kink((1.0, 0.0), 0.0, (0.0, 1.0), ((0.0, 1.0), (1.0, 2.0))),
        Kink((-1.0, 1.0), 1.0 * -1.0, (1.0, -1.0), ((0.0, 1.0), (1.0, 0.0))),
    )),
    Case("abs", _abs, uniform(-2, 2, 3), group="kinks", kinks=(
        # |x1 - x2| at x1 = x2 = 0.75: d/dx = sign(0) = 0; x3 = 2
        Kink((0.75, 0.75, 2.0), 0.75**3 + 4.0, (3 * 0.75**2, 0.0, 4.0),
             ((6 * 0.75, 0.0, 0.0), (0.0, 0.0, 0.0), (0.0, 0.0, 2.0))),
        # |x1|**3 at 0 is C2; |x1 - x2| with x2 = -1: d/dx1 = 1, d/dx2 = -1
        Kink((0.0, -1.0, 1.5), 1.5 + 2.25, (1.5, -1.5, 1.0 + 3.0),
             ((0.0, 0.0, 1.0), (0.0, 0.0, -1.0), (1.0, -1.0, 2.0))),
    )),
    Case("max_min", _max_min, uniform(-2, 2, 3), group="max_min", kinks=(
        # Max(x1, x2*x3) tie at x1 = x2*x3 = 1 (x2 = 0.5, x3 = 2); Min(x1**2, x2) = 0.5 no tie
        Kink((1.0, 0.5, 2.0), 1.0 + 0.5 + 2.0, (0.5 + 2.0, 0.5 * 2.0 + 1.0, 0.5 * 0.5 + 1.0),
             ((0.0, 0.0, 1.0), (0.0, 0.0, 0.5), (1.0, 0.5, 0.0))),
        # Min tie at x1**2 = x2 = 0.25 (x1 = 0.5): d/dx1 = 1/2 * 2 x1, d/dx2 = 1/2;
        # Max(0.5, 0.25*(-1)) = x1, no tie; d2/dx1^2 of the Min = 1/2 * 2
        Kink((0.5, 0.25, -1.0), 0.5 + 0.25 - 0.5, (1.0 + 0.5 - 1.0, 0.5, 0.5),
             ((1.0, 0.0, 1.0), (0.0, 0.0, 0.0), (1.0, 0.0, 0.0))),
    )),
    Case("piecewise", _piecewise, uniform(-3, 3, 2), group="kinks", kinks=(
        # at x1 = 0 the second branch (x1 < 2) and the lazy second branch (not x1 > 0) apply
        Kink((0.0, 1.5), 2.25, (1.5, 3.0), ((0.0, 1.0), (1.0, 2.0))),
        # at x1 = 2 the last branch x1*x2**2 applies; lazy branch sqrt(x1)*x2
        Kink((2.0, -1.0), 2.0 + 2**0.5 * -1.0 + 1.0,
             (1.0 + -1.0 / (2 * 2**0.5), 2 * 2.0 * -1.0 + 2**0.5 - 2.0),
             ((1.0 / (4 * 2**1.5), 2 * -1.0 + 1 / (2 * 2**0.5)),
              (2 * -1.0 + 1 / (2 * 2**0.5), 2 * 2.0 + 2.0)))),
    ),
    Case("floor_ceiling", _floor_ceiling, away_from_integers(2), group="kinks", kinks=(
        # on the jumps floor/ceil take their integer value and their derivative is 0
        Kink((1.0, 2.0), 1.0 * 4.0 + 2.0 * 1.0 + 2.0, (2.0 + 2 * 2.0, 2 * 2.0 + 1.0),
             ((4.0, 2.0), (2.0, 2.0 * 1.0 + 0.0))),
    )),
    Case("sign_heaviside", _sign_heaviside, uniform(-2, 2, 2), group="kinks", kinks=(
        # sign(0) = 0, Heaviside(0, 0) = 0, both derivatives 0 at the jump
        Kink((0.0, 1.5), 0.0, (1.5, 0.0), ((0.0, 1.0), (1.0, 0.0))),
        Kink((1.0, 0.0), 0.0, (0.0, 1.0), ((0.0, 1.0), (1.0, 2.0))),
    )),
    Case("mse_l2_data", _mse_l2, uniform(-2, 2, 3), data=_data_ty, group="data_mean"),
    Case("rmse_logistic_data", _rmse_logistic, uniform(-2, 2, 2), data=_data_ty,
         group="data_sum"),
)


@dataclass(frozen=True)
class Group:
    """Cases compiled together: the sum of their losses over disjoint parameters.

    A case's gradient and Hessian are the blocks ``slices[k]`` of the group's; its Hessian has no
    coupling to the other blocks. Few kernels keep Numba's compile time (the suite's cost) low.
    """

    name: str
    cases: tuple[Case, ...]
    loss: sp.Expr
    params: tuple
    slices: tuple[slice, ...]
    data: Callable[[np.random.Generator], dict[str, np.ndarray]] | None


def group(name: str) -> Group:
    """The combined loss of the cases of group ``name`` (parameters renamed ``c<k>_<name>``)."""
    cases = tuple(c for c in CASES if c.group == name)
    terms, params, slices = [], [], []
    for case in cases:
        k = CASES.index(case)
        loss, ps = case.build()
        fresh = [sg.params(f"c{k}_{p.name}") for p in ps]
        terms.append(loss.xreplace(dict(zip(ps, fresh, strict=True))))
        slices.append(slice(len(params), len(params) + len(ps)))
        params.extend(fresh)
    datas = {c.data for c in cases}
    assert len(datas) == 1, f"the cases of group {name} must share their data sampler"
    return Group(name, cases, sp.Add(*terms), tuple(params), tuple(slices), datas.pop())


GROUPS: tuple[str, ...] = tuple(dict.fromkeys(c.group for c in CASES))


# -- the independent oracle --------------------------------------------------------------------

def elementary(e: sp.Expr) -> sp.Expr:
    """Rewrite symgrad's functions into SymPy primitives (no symgrad derivative rule is used)."""
    rules = [
        (relu, lambda u: sp.Max(u, 0)),
        (sigmoid, lambda u: 1 / (1 + sp.exp(-u))),
        (softplus, lambda u: sp.log(1 + sp.exp(u))),
        (logsumexp, lambda *a: sp.log(sp.Add(*[sp.exp(x) for x in a]))),
        (log1p, lambda u: sp.log(1 + u)),
        (expm1, lambda u: sp.exp(u) - 1),
    ]
    for cls, fn in rules:
        e = e.replace(cls, fn)
    return e


def expand_reductions(e: sp.Expr, n: int) -> tuple[sp.Expr, list[sp.Symbol]]:
    """Replace ``sg.mean``/``sg.sum`` by explicit sums over ``n`` samples of fresh symbols.

    Returns the expression and the symbols ``<column>_<i>`` in (column, sample) order.
    """
    cols = sorted({s for s in e.free_symbols if isinstance(s, sg.lang.symbols.Data)},
                  key=lambda s: s.name)
    per = {c: [sp.Symbol(f"{c.name}_{i}", real=True) for i in range(n)] for c in cols}

    def unroll(inner):
        return sp.Add(*[inner.xreplace({c: per[c][i] for c in cols}) for i in range(n)])

    e = e.replace(Mean, lambda inner: unroll(inner) / n)
    e = e.replace(Sum, unroll)
    return e, [s for c in cols for s in per[c]]


def _heaviside(z, h0=sp.S.Half):
    if z == 0:
        raise ValueError("the oracle is never evaluated on a kink: write kinks by hand")
    return mpmath.mpf(1) if z > 0 else mpmath.mpf(0)


_MODULES = [{"Heaviside": _heaviside, "DiracDelta": lambda *a: mpmath.mpf(0)}, "mpmath"]


@dataclass(frozen=True)
class Oracle:
    """Exact value, gradient, Hessian of a case (smooth points only), in ``DPS`` digits.

    Calling it returns ``(value, grad, hessian, hessian_exact)``: floats rounded once from the
    ``DPS``-digit results, and the unrounded Hessian entries for :meth:`hvp`.
    """

    fn: Callable
    n: int

    def __call__(self, x: np.ndarray, data: dict | None = None):
        args = [mpmath.mpf(float(v)) for v in x]
        for name in sorted(data or {}):
            args += [mpmath.mpf(float(v)) for v in data[name]]
        with mpmath.workdps(DPS):
            out = self.fn(*args)
        n = self.n
        val = float(out[0])
        g = np.array([float(v) for v in out[1:1 + n]])
        upper = out[1 + n:]  # the upper triangle row by row: the Hessian is symmetric
        full = [upper[_upper_index(n, i, j)] for i in range(n) for j in range(n)]
        h = np.array([float(v) for v in full]).reshape(n, n)
        return val, g, h, full

    def hvp(self, h_exact, v: np.ndarray) -> np.ndarray:
        """Hessian times ``v`` in ``DPS`` digits (from the unrounded Hessian)."""
        n = self.n
        with mpmath.workdps(DPS):
            return np.array([float(mpmath.fsum(h_exact[i * n + j] * mpmath.mpf(float(v[j]))
                                               for j in range(n))) for i in range(n)])


def _upper_index(n: int, i: int, j: int) -> int:
    """The place of Hessian entry (i, j) in the row-by-row upper triangle of an n x n matrix."""
    i, j = min(i, j), max(i, j)
    return i * n - i * (i - 1) // 2 + (j - i)


def oracle(loss: sp.Expr, params: tuple) -> Oracle:
    """``sympy.lambdify`` of ``sympy.diff`` of the elementary form of ``loss``."""
    e, data_syms = expand_reductions(elementary(loss), N_SAMPLES)
    ps = list(params)
    grad = [sp.diff(e, p) for p in ps]
    # the upper triangle only (mixed partials agree at the smooth points where it is called)
    hess = [sp.diff(grad[i], ps[j]) for i in range(len(ps)) for j in range(i, len(ps))]
    flat = [e, *grad, *hess]
    # floor/ceiling/sign/Heaviside are flat away from their jumps (points avoid the jumps)
    flat = [d.replace(lambda a: isinstance(a, sp.Derivative), lambda a: sp.S.Zero) for d in flat]
    fn = sp.lambdify(ps + data_syms, flat, modules=_MODULES)
    return Oracle(fn, len(ps))


def assert_close(actual, expected, rtol: float, what: str) -> None:
    """Max-abs error relative to the max-abs of the expected array (cancellation-safe)."""
    a = np.asarray(actual, dtype=float)
    e = np.asarray(expected, dtype=float)
    assert a.shape == e.shape, f"{what}: shape {a.shape} != {e.shape}"
    scale = max(float(np.max(np.abs(e))) if e.size else 0.0, 1e-300)
    err = float(np.max(np.abs(a - e))) / scale if e.size else 0.0
    assert err <= rtol, (f"{what}: relative error {err:.3g} > {rtol:g}\n"
                         f"  compiled: {a.tolist()}\n  oracle:   {e.tolist()}")
