"""The exact oracle: the SymPy derivative of ``f.expr`` evaluated with mpmath at 50 digits."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .report import EXACT_DPS

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

    data_names = tuple(getattr(k, "data_names", ()) or ())
    if data_names:
        raise NotImplementedError(
            "method='exact' does not support losses with data (reductions over samples) yet; "
            "use method='complex' (analytic losses) or method='richardson'"
        )
    params = tuple(getattr(k, "params", ()) or ())
    if len(params) != n:
        raise NotImplementedError(
            f"method='exact' needs one named parameter per entry of x: f.params has "
            f"{len(params)} names, x has {n} entries (indexed vector parameters are unsupported)"
        )
    by_name = {s.name: s for s in expr.free_symbols if isinstance(s, sympy.Symbol)}
    extra = sorted(set(by_name) - set(params))
    if extra:
        raise NotImplementedError(
            f"method='exact': f.expr has symbols that are not parameters: {extra}"
        )
    return [by_name.get(p, sympy.Symbol(p)) for p in params]


def _mp_values(syms: Sequence[Any], exprs: Sequence[Any], x: np.ndarray) -> np.ndarray:
    """Evaluate SymPy expressions at x with EXACT_DPS digits; returns floats."""
    import mpmath
    import sympy

    out = np.empty(len(exprs))
    todo = list(range(len(exprs)))
    nonzero = [i for i in todo if exprs[i] != 0]
    out[:] = 0.0
    try:
        fn = _lambdify_mp(syms, [exprs[i] for i in nonzero])
        with mpmath.workdps(EXACT_DPS):
            vals = fn(*[mpmath.mpf(float(v)) for v in x])
            for i, v in zip(nonzero, vals, strict=True):
                out[i] = float(mpmath.re(v)) if isinstance(v, mpmath.mpc) else float(v)
        return out
    except (NameError, TypeError, AttributeError, ValueError, ZeroDivisionError):
        pass
    subs = {s: sympy.Float(float(v), EXACT_DPS) for s, v in zip(syms, x, strict=True)}
    for i in nonzero:
        v = _elementary(exprs[i]).evalf(EXACT_DPS, subs=subs)
        if not v.is_number or v.free_symbols:
            funcs = sorted({type(a).__name__ for a in v.atoms(sympy.Function)})
            raise NotImplementedError(
                f"method='exact' cannot evaluate {funcs} numerically; use method='richardson'"
            )
        out[i] = float(sympy.re(v))
    return out


def _exact_grad(k: Any, x: np.ndarray) -> np.ndarray:
    import sympy

    expr = k.expr
    syms = _param_symbols(k, expr, x.size)
    return _mp_values(syms, [sympy.diff(expr, s) for s in syms], x)


def _exact_hessian(k: Any, x: np.ndarray) -> np.ndarray:
    import sympy

    expr = k.expr
    n = x.size
    syms = _param_symbols(k, expr, n)
    first = [sympy.diff(expr, s) for s in syms]
    pairs = [(i, j) for i in range(n) for j in range(i, n)]
    vals = _mp_values(syms, [sympy.diff(first[i], syms[j]) for i, j in pairs], x)
    H = np.empty((n, n))
    for (i, j), v in zip(pairs, vals, strict=True):
        H[i, j] = H[j, i] = v
    return H


