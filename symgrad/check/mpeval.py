"""SymPy expressions evaluated with mpmath node by node, each shared subexpression once.

The derivatives of an unrolled loss share most of their subtrees; printing them for
``lambdify`` costs more than the evaluation, so this walks the expression DAG with a memo.

>>> import sympy as sp
>>> a, b = sp.symbols("a b", real=True)
>>> [float(v) for v in mp_eval([sp.exp(a) * b, b**2 + a], {a: 0.0, b: 3.0})]
[3.0, 9.0]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import mpmath
import sympy as sp

from .report import EXACT_DPS

__all__ = ["mp_eval"]

#: SymPy functions with an mpmath function of the same name (lowercase).
_SAME = frozenset({"exp", "log", "sin", "cos", "tan", "tanh", "sinh", "cosh", "asin", "acos",
                   "atan", "erf", "erfc", "asinh", "acosh", "atanh", "atan2", "sqrt", "sign"})


def mp_eval(exprs: Sequence[sp.Expr], point: Mapping[sp.Symbol, float],
            dps: int = EXACT_DPS) -> list[Any]:
    """The values of ``exprs`` at ``point`` (mpmath numbers, ``dps`` digits)."""
    with mpmath.workdps(dps):
        at = {s: mpmath.mpf(float(v)) for s, v in point.items()}
        memo: dict[sp.Basic, Any] = {}
        return [_eval(e, at, memo, dps) for e in exprs]


def _eval(root: sp.Basic, at: dict, memo: dict, dps: int) -> Any:
    stack = [root]
    while stack:  # post-order without recursion (the trees can be deep)
        e = stack[-1]
        if e in memo:
            stack.pop()
            continue
        todo = [a for a in _operands(e) if a not in memo]
        if todo:
            stack.extend(todo)
            continue
        stack.pop()
        memo[e] = _node(e, at, memo, dps)
    return memo[root]


def _operands(e: sp.Basic) -> tuple:
    if e.is_Add or e.is_Mul or e.is_Pow or (isinstance(e, sp.Function)
                                               and type(e).__name__.lower() in _SAME):
        return e.args
    return ()


def _node(e: sp.Basic, at: dict, memo: dict, dps: int) -> Any:
    if e.is_Symbol:
        if e not in at:
            raise NotImplementedError(f"method='exact': {e} has no value")
        return at[e]
    if e.is_Integer:
        return mpmath.mpf(int(e))
    if e.is_Rational:
        return mpmath.mpf(int(e.p)) / int(e.q)
    if e.is_Float:
        return mpmath.mpf(e._mpf_)
    args = [memo[a] for a in _operands(e)]
    if e.is_Add:
        return mpmath.fsum(args)
    if e.is_Mul:
        return mpmath.fprod(args)
    if e.is_Pow:
        b, p = args
        return b**p
    if args:
        return getattr(mpmath, type(e).__name__.lower())(*args)
    v = sp.N(e.xreplace({s: sp.Float(at[s], dps) for s in e.free_symbols if s in at}), dps + 10)
    if not v.is_number:
        funcs = sorted({type(a).__name__ for a in v.atoms(sp.Function)})
        raise NotImplementedError(f"method='exact' cannot evaluate {funcs or v} numerically; "
                                  "use method='richardson'")
    return mpmath.mpmathify(complex(v)) if not v.is_real else mpmath.mpf(sp.Float(v, dps)._mpf_)
