"""The exact oracle: the SymPy derivative of the loss evaluated with mpmath at 50 digits.

The loss is ``f.expr`` for a parameter-only scalar loss, else the expression :mod:`.unroll`
writes out over the data (scalar losses with data or vectors, array and residual kernels).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from .mpeval import mp_eval
from .report import EXACT_DPS
from .unroll import exact_loss, exact_residuals

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
    """The loss as a SymPy expression and its symbols, one per entry of ``x``: ``f.expr`` for
    a parameter-only scalar loss, else unrolled over the data (:mod:`.unroll`); and whether
    it was unrolled (large, with shared subtrees: evaluated by :func:`.mpeval.mp_eval`)."""
    kind = _with_loss(k)
    if kind == "scalar" and not getattr(k, "data_names", ()) and not getattr(k, "vectors", ()):
        return k.expr, _param_symbols(k, k.expr, x.size), False
    return (*exact_loss(k, x, data, order, max_cost), True)


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


def _exact_grad(k: Any, x: np.ndarray, data: Mapping[str, Any] | None = None,
                max_cost: int | None = None) -> np.ndarray:
    """The gradient of ``k``'s loss at ``x`` (with ``data``) from SymPy at 50 digits."""
    import sympy

    expr, syms, walk = _oracle(k, x, data, max_cost=max_cost)
    return _mp_values(syms, [sympy.diff(expr, s) for s in syms], x, walk)


def _exact_hessian(k: Any, x: np.ndarray, data: Mapping[str, Any] | None = None) -> np.ndarray:
    """The Hessian of ``k``'s loss at ``x`` (with ``data``) from SymPy at 50 digits; for a
    residual kernel the Gauss-Newton matrix ``J^T J`` (what its ``hvp``/``hessian`` compute)."""
    import sympy

    n = x.size
    if getattr(k, "kind", "scalar") == "residual":  # Gauss-Newton
        _with_loss(k, None)  # (no fallback to name: differences do not give JᵀJ)
        rs, syms = exact_residuals(k, x, data)
        J = _mp_values(syms, [sympy.diff(r, s) for r in rs for s in syms], x, True)
        J = J.reshape(len(rs), n)
        return J.T @ J
    expr, syms, walk = _oracle(k, x, data, order=2)
    first = [sympy.diff(expr, s) for s in syms]
    pairs = [(i, j) for i in range(n) for j in range(i, n)]
    vals = _mp_values(syms, [sympy.diff(first[i], syms[j]) for i, j in pairs], x, walk)
    H = np.empty((n, n))
    for (i, j), v in zip(pairs, vals, strict=True):
        H[i, j] = H[j, i] = v
    return H


