"""Non-smooth points: found symbolically from the expression and numerically from one-sided
differences; a smaller step to step off them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np

from .differences import Line, _Diff
from .exact import KINK_JUMP, KINK_NARY, KINK_UNARY, _lambdify_mp, _param_symbols
from .report import Tolerance
from .target import _Target


def kink_arguments(expr: Any) -> list[Any]:
    """SymPy expressions whose zeros are the non-smooth points of ``expr``.

    Abs/sign/Heaviside/relu(a) -> a; Max/Min(a, b, ...) -> pairwise a - b; Piecewise conditions
    ``lhs < rhs`` -> lhs - rhs; floor/ceiling(a) -> sin(pi*a) (zero at the integers).
    Functions are identified by class name, so symgrad's own ``relu`` needs no import here.

    Example:
        >>> import sympy
        >>> x, y = sympy.symbols("x y")
        >>> kink_arguments(sympy.Abs(x - 1) + sympy.Max(x, y))
        [x - 1, x - y]
    """
    import sympy

    out: list[Any] = []
    seen: set[Any] = set()

    def add(a: Any) -> None:
        if a not in seen and not getattr(a, "is_number", False):
            seen.add(a)
            out.append(a)

    for e in sympy.preorder_traversal(expr):
        name = type(e).__name__
        if name in KINK_UNARY and e.args:
            add(e.args[0])
        elif name in KINK_NARY:
            for a, b in combinations(e.args, 2):
                add(a - b)
        elif name in KINK_JUMP and e.args:
            add(sympy.sin(sympy.pi * e.args[0]))
        elif name == "Piecewise":
            for _, cond in e.args:
                if isinstance(cond, sympy.logic.boolalg.Boolean):
                    for rel in cond.atoms(sympy.core.relational.Relational):
                        add(rel.lhs - rel.rhs)
    return out


@dataclass(frozen=True)
class _KinkProbe:
    """Evaluates the parameter-only kink arguments of a Kernel's expression at points."""

    fn: Callable[..., Any] | None
    n_args: int
    data_dependent: bool
    #: the loss may have kinks at all (False: ``f.expr`` is a SymPy expression without any)
    any_kinks: bool = True

    def crosses(self, x: np.ndarray, points: Sequence[np.ndarray]) -> bool:
        """True when some kink argument that varies over ``points`` reaches zero there."""
        if self.fn is None:
            return False
        vals = np.array([self._eval(p) for p in [x, *points]])  # (m, n_args)
        lo, hi = vals.min(axis=0), vals.max(axis=0)
        return bool(np.any((lo <= 0) & (hi >= 0) & (hi > lo)))

    def _eval(self, p: np.ndarray) -> np.ndarray:
        assert self.fn is not None
        return np.array([float(v) for v in self.fn(*p)], dtype=np.float64)


def _kink_probe(t: _Target, n: int) -> _KinkProbe:
    import sympy

    k = t.kernel
    expr = getattr(k, "expr", None) if k is not None else None
    if expr is None or getattr(t, "analytic", False):
        return _KinkProbe(None, 0, False)
    args = kink_arguments(expr) if isinstance(expr, sympy.Basic) else None
    try:
        syms = _param_symbols(k, expr, n)
    except NotImplementedError:
        return _KinkProbe(None, 0, True, args is None or bool(args))
    assert args is not None
    pset = set(syms)
    own = [a for a in args if a.free_symbols <= pset]
    data_dep = len(own) < len(args)
    if not own:
        return _KinkProbe(None, 0, data_dep, bool(args))
    try:
        fn = _lambdify_mp(syms, own)
    except Exception:  # unknown function in a kink argument: fall back to numeric detection
        return _KinkProbe(None, 0, data_dep)
    import mpmath

    def fn_dps(*p: float) -> list[Any]:
        with mpmath.workdps(30):
            return list(fn(*[mpmath.mpf(float(v)) for v in p]))

    return _KinkProbe(fn_dps, len(own), data_dep)


#: Half-width of the neighbourhood probed for kinks by method="exact" (relative to max|x|).
_EXACT_PROBE = 1e-8


def _stencil(x: np.ndarray, e: np.ndarray, h: float, m: str) -> list[np.ndarray]:
    """The points that method ``m``'s differences of step ``h`` along ``e`` evaluate."""
    offsets = (-2.0, -1.0, 1.0, 2.0) if m == "central" else (-1.0, -0.5, 0.5, 1.0)
    return [x + o * h * e for o in offsets]


def _stencil_kinks(probe: _KinkProbe, x: np.ndarray, rows: np.ndarray, steps: np.ndarray,
                   m: str) -> np.ndarray:
    """Per row ``e``: does the stencil along ``e`` (of step ``steps[k]``; for method="exact",
    which takes no steps, a small neighbourhood) cross a kink of the expression?"""
    if probe.fn is None:
        return np.zeros(len(rows), dtype=bool)
    h_exact = _EXACT_PROBE * max(1.0, float(np.max(np.abs(x))))
    return np.array([probe.crosses(x, _stencil(x, e, h if m != "exact" else h_exact, m))
                     for e, h in zip(rows, steps, strict=True)], dtype=bool)


def _numeric_kink(g: Any, fwd: Any, bwd: Any, noise: Any, tol0: Any) -> Any:
    """The one-sided derivatives jump and the analytic value sits on one side.

    ``fwd``/``bwd`` are second-order one-sided differences: for a smooth f they agree to
    O(h**3), far below ``tol0``; a slope jump J inside the stencil separates them by O(J).
    """
    jump = np.abs(fwd - bwd)
    side = np.minimum(np.abs(g - fwd), np.abs(g - bwd))
    return (jump > 10 * (tol0 + noise)) & (side <= 0.1 * jump)


# --------------------------------------------------------------------------------------------


def _detectable(fwd: Any, bwd: Any, limit: Any) -> float:
    """The largest jump ``|fwd - bwd|`` above its detection limit (0.0 when none is)."""
    j = np.abs(np.asarray(fwd) - np.asarray(bwd))
    return float(np.max(np.where(j > limit, j, 0.0), initial=0.0))


def _jump(a: Any, d: Any, fwd: Any, bwd: Any, noise: Any, tol: Tolerance) -> float:
    """The detectable jump of the one-sided slopes of a difference ``d`` of ``a`` (the limit
    :func:`_numeric_kink` uses)."""
    return _detectable(fwd, bwd, 10 * (tol.bound(a, d) + noise))


#: How many times check_grad shrinks the step (by 4 each) to step off a kink.
_KINK_RETRIES = 12
#: A step clear of a kink verifies within the tolerance plus its error estimate, up to this many
#: tolerances: closer to the kink its rounding noise would verify a 1e-4 error at rtol 1e-8, so
#: the component stays unverified (the exact oracle, or a move off the kink, settles it).
_MAX_SLACK = 100.0


def _smaller_step(scheme: Callable[..., _Diff], line: Line, f0: Any, h: float, extra: float,
                  a: Any, tol: Tolerance, probe: _KinkProbe, x: np.ndarray, e: np.ndarray,
                  m: str, near_kink: bool = True, jump0: float = 0.0
                  ) -> tuple[_Diff | None, bool, bool]:
    """Differences at steps h/4, h/16, ... until the first clean one: its stencil holds no
    kink and its error estimate is at the level of the tolerance or of rounding (a larger one
    means the stencil still holds undetected kinks). Returns ``(that difference or None, x sits
    on a kink (the last stencil still held one), the difference agrees with a)`` for a
    component or a Hessian row ``a``.

    The first clean step decides: shrinking further only adds rounding noise to the error
    estimate, which as slack passed a 1% error. ``near_kink``: a kink was seen in the first
    stencil, and the clean step verifies within the tolerance plus its error estimate (at most
    :data:`_MAX_SLACK` tolerances; a difference within a larger estimate is not verifiable
    there: None); otherwise (a component retried only because it failed) within the
    tolerance itself. ``jump0``: the detectable jump of the one-sided slopes in the first
    stencil (:func:`_jump`)."""
    at_kink, jump = False, jump0
    for j in range(1, _KINK_RETRIES + 1):
        dd = scheme(line, f0, h / 4.0**j, extra)
        tol0 = tol.bound(a, dd.d)
        at_kink = bool(np.any(_numeric_kink(a, dd.fwd, dd.bwd, dd.noise, tol0))) or (
            probe.fn is not None and probe.crosses(x, _stencil(x, e, dd.step, m)))
        # the largest jump of the one-sided slopes seen so far: a step is clear of it only
        # while its rounding noise could still show it (a tinier step hides it in the noise)
        lim = 10 * (tol0 + dd.noise)
        jump = max(jump, _detectable(dd.fwd, dd.bwd, lim))
        visible = jump == 0.0 or float(np.max(lim)) < jump
        if not at_kink and visible and np.all(dd.err <= lim):
            diff = np.abs(a - dd.d)
            if not near_kink:
                return dd, False, bool(np.all(diff <= tol0))
            if np.all(diff <= tol0 + np.minimum(dd.err, _MAX_SLACK * tol0)):
                return dd, False, True
            if np.any(diff > tol0 + dd.err):
                return dd, False, False
            return None, True, False  # within the step's rounding only: not verifiable here
    return None, at_kink, False
