"""The exact oracle: the SymPy derivative of the loss evaluated with mpmath at 50 digits.

The loss is ``f.expr`` for a parameter-only scalar loss, else the expression :mod:`.unroll`
writes out over the data (scalar losses with data or vectors, array and residual kernels).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from .mpeval import mp_eval
from .report import EXACT_DPS
from .unroll import exact_literals, exact_loss, exact_residuals

_ELEMENTARY: dict[str, Callable[..., Any]] = {}


def _elementary_table() -> dict[str, Callable[..., Any]]:
    if not _ELEMENTARY:
        import sympy

        _ELEMENTARY.update(
            sigmoid=lambda z: 1 / (1 + sympy.exp(-z)),
            softplus=lambda z: sympy.log(1 + sympy.exp(z)),
            relu=lambda z: sympy.Piecewise((z, z > 0), (0, True)),
        )
    return _ELEMENTARY


def _elementary(expr: Any) -> Any:
    """Replace symgrad's custom functions (by class name) with elementary forms."""
    import sympy

    table = _elementary_table()
    reps = {}
    for e in sympy.preorder_traversal(expr):
        name = type(e).__name__
        if isinstance(e, sympy.Function) and name in table and len(e.args) == 1:
            reps[e] = table[name](e.args[0])
    if not reps:
        return expr
    return _elementary(expr.xreplace(reps))


def _lambdify_mp(syms: Sequence[Any], exprs: Sequence[Any]) -> Callable[..., Any]:
    import sympy

    body = [_elementary(e) for e in exprs]
    return sympy.lambdify(list(syms), body, modules="mpmath")


def _param_symbols(k: Any, expr: Any, n: int) -> list[Any]:
    import sympy

    params = tuple(getattr(k, "params", ()) or ())
    entries = tuple(getattr(getattr(k, "problem", None), "params", ()) or ())
    if (len(params) != n and len(entries) == n and isinstance(expr, sympy.Basic)
            and all(isinstance(e, sympy.Symbol) for e in entries)):
        return list(entries)  # a fused array loss: f.params names arrays, these their entries
    if len(params) != n:
        raise NotImplementedError(
            f"method='exact' needs one named parameter per entry of x: f.params has "
            f"{len(params)} names, x has {n} entries"
        )
    if not isinstance(expr, sympy.Basic):  # an array expression (array residuals)
        raise NotImplementedError("f.expr is an array expression, not a SymPy expression")
    by_name = {s.name: s for s in expr.free_symbols if isinstance(s, sympy.Symbol)}
    extra = sorted(set(by_name) - set(params))
    if extra:
        raise NotImplementedError(
            f"method='exact': f.expr has symbols that are not parameters: {extra}"
        )
    return [by_name.get(p, sympy.Symbol(p)) for p in params]


def _with_loss(k: Any, fallback: str | None = "richardson") -> str:
    """``k``'s kind, or the error saying why the exact oracle cannot read its SymPy loss (and
    ``fallback``, the method to use instead, if any)."""
    kind = getattr(k, "kind", "scalar")
    if kind not in ("scalar", "array", "residual"):
        raise NotImplementedError(f"method='exact' does not check kernels of kind {kind!r}")
    if not hasattr(k, "problem") and not hasattr(k, "expr"):
        inner = " (a bound kernel: pass the kernel itself and its data=)" \
            if hasattr(k, "kernel") else ""
        raise NotImplementedError(
            f"method='exact' needs the kernel's SymPy loss (f.problem or f.expr){inner}"
            + (f"; use method={fallback!r}" if fallback else ""))
    return kind


def _oracle(k: Any, x: np.ndarray, data: Mapping[str, Any] | None, order: int = 1,
            max_cost: int | None = None) -> tuple[Any, list[Any], bool]:
    """The loss as a SymPy expression and its symbols, one per entry of ``x``, from
    :mod:`.unroll`: a parameter-only scalar loss is ``f.expr`` (its parameters, or the entries
    of a fused kernel's array parameters, as symbols; nothing unrolled, so no cost limit), any
    other unrolled over the data. Either way its float literals are exact and its kinks resolved
    at ``x`` with the kernel's KinkPolicy. Also whether to evaluate it with the memoised walk
    (:func:`.mpeval.mp_eval`): always."""
    kind = _with_loss(k)
    if kind == "scalar" and not getattr(k, "data_names", ()) and not getattr(k, "vectors", ()):
        if _smooth(k.expr):  # no kink to resolve: f.expr itself, evaluated by lambdify (10x
            expr = exact_literals(k.expr)  # faster than the walk on a 60-term fuzz batch)
            return expr, _param_symbols(k, expr, x.size), False
        max_cost = sys.maxsize
    return (*exact_loss(k, x, data, order, max_cost), True)


#: The functions with a kink in their argument, a jump, or a kink between their arguments
#: (:func:`symgrad.check.kinks.kink_arguments` reads the same names).
KINK_UNARY = frozenset({"Abs", "sign", "Heaviside", "relu", "DiracDelta"})
KINK_JUMP = frozenset({"floor", "ceiling", "frac"})
KINK_NARY = frozenset({"Max", "Min", "Max2", "Min2"})
_KINKED = KINK_UNARY | KINK_JUMP | KINK_NARY | {"Piecewise"}


def _smooth(expr: Any) -> bool:
    """Whether ``expr`` has no kinked function (see :data:`_KINKED`)."""
    import sympy

    return not any(type(e).__name__ in _KINKED for e in sympy.preorder_traversal(expr))


def _mp_values(syms: Sequence[Any], exprs: Sequence[Any], x: np.ndarray,
               walk: bool = False) -> np.ndarray:
    """Evaluate SymPy expressions at x with EXACT_DPS digits; returns floats."""
    import mpmath
    import sympy

    out = np.zeros(len(exprs))
    nonzero = [i for i, e in enumerate(exprs) if e != 0]
    try:  # unrolled: the memoised walk first (shared subtrees once); then lambdify, evalf
        if not walk:
            raise NotImplementedError
        point = dict(zip(syms, x, strict=True))
        vals = mp_eval([_elementary(exprs[i]) for i in nonzero], point)
        for i, v in zip(nonzero, vals, strict=True):
            out[i] = float(mpmath.re(v))
        return out
    except (NotImplementedError, TypeError, AttributeError, ValueError, ZeroDivisionError):
        pass
    try:
        fn = _lambdify_mp(syms, [exprs[i] for i in nonzero])
        with mpmath.workdps(EXACT_DPS):
            vals = fn(*[mpmath.mpf(float(v)) for v in x])
            for i, v in zip(nonzero, vals, strict=True):
                out[i] = float(mpmath.re(v)) if isinstance(v, mpmath.mpc) else float(v)
        return out
    except (NameError, TypeError, AttributeError, ValueError, ZeroDivisionError,
            NotImplementedError):  # (NotImplementedError: a function mpmath cannot print)
        pass
    subs = {s: sympy.Float(float(v), EXACT_DPS) for s, v in zip(syms, x, strict=True)}
    for i in nonzero:
        try:
            v = _elementary(exprs[i]).evalf(EXACT_DPS, subs=subs)
            if v.is_number and not v.free_symbols:
                out[i] = float(sympy.re(v))
                continue
        except Exception:  # SymPy's errors: reported as what it cannot evaluate
            pass
        raise NotImplementedError(_cannot(exprs[i]))
    return out


def _cannot(e: Any) -> str:
    """Why the oracle fails on derivative ``e``: the functions SymPy leaves unevaluated in it."""
    import sympy

    funcs = sorted({type(a).__name__ if not isinstance(a, sympy.Derivative)
                    else f"Derivative of {type(a.expr).__name__}"
                    for a in e.atoms(sympy.Function, sympy.Derivative)})
    return (f"method='exact' cannot evaluate the derivative at x numerically: it holds "
            f"{', '.join(funcs) or e} there (a function SymPy cannot differentiate or evaluate "
            "at this point); use method='richardson'")


def _exact_grad(k: Any, x: np.ndarray, data: Mapping[str, Any] | None = None,
                max_cost: int | None = None) -> np.ndarray:
    """The gradient of ``k``'s loss at ``x`` (with ``data``) from SymPy at 50 digits."""
    import sympy

    expr, syms, walk = _oracle(k, x, data, max_cost=max_cost)
    return _mp_values(syms, [sympy.diff(expr, s) for s in syms], x, walk)


def _exact_hessian(k: Any, x: np.ndarray, data: Mapping[str, Any] | None = None,
                   max_cost: int | None = None) -> np.ndarray:
    """The Hessian of ``k``'s loss at ``x`` (with ``data``) from SymPy at 50 digits; for a
    residual kernel the Gauss-Newton matrix ``J^T J`` (what its ``hvp``/``hessian`` compute)."""
    import sympy

    n = x.size
    if getattr(k, "kind", "scalar") == "residual":  # Gauss-Newton
        _with_loss(k, None)  # (no fallback to name: differences do not give JᵀJ)
        rs, syms = exact_residuals(k, x, data, max_cost)
        J = _mp_values(syms, [sympy.diff(r, s) for r in rs for s in syms], x, True)
        J = J.reshape(len(rs), n)
        return J.T @ J
    expr, syms, walk = _oracle(k, x, data, order=2, max_cost=max_cost)
    first = [sympy.diff(expr, s) for s in syms]
    pairs = [(i, j) for i in range(n) for j in range(i, n)]
    vals = _mp_values(syms, [sympy.diff(first[i], syms[j]) for i, j in pairs], x, walk)
    H = np.empty((n, n))
    for (i, j), v in zip(pairs, vals, strict=True):
        H[i, j] = H[j, i] = v
    return H


