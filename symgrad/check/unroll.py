"""The exact oracle's loss: one SymPy expression in one symbol per entry of ``x``.

Every kind of kernel is turned into a data-free scalar expression, unrolled over the (small)
data, with no use of symgrad's derivative code:

- ``scalar``: ``f.expr`` with every ``mean``/``sum`` over samples written out sample by sample,
  every index sum over parameter vectors term by term (``x[i]`` -> the entry of ``x``), data
  columns as 50-digit Floats;
- ``array``: the array graph interpreted element by element (:mod:`symgrad.ir.interp`);
- ``residual``: ``1/2 sum_i r_i**2`` over every sample's residuals (``f.problem.exprs``); and
  the residuals themselves (:func:`exact_residuals`), whose exact Jacobian gives the
  Gauss-Newton matrix ``J^T J`` that a residual kernel's ``hvp``/``hessian`` stand for.

Kinks are resolved at ``x`` with the kernel's KinkPolicy (:class:`symgrad.ir.interp.Smoother`)
for every loss (parameter-only ones too), so the expression is smooth near ``x`` and has the
kernel's derivative there; float literals become the Rationals of their binary values
(:func:`exact_literals`), so the 50-digit evaluation is exact.
The cost (unrolled size x parameters) is bounded by :data:`EXACT_MAX_COST`: bigger losses are
refused with their size, asking for fewer samples (``batch=``).
"""

from __future__ import annotations

import contextvars
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import sympy as sp

from ..ad.derive import KinkPolicy
from ..ir.interp import Smoother, interpret, work
from ..lang.symbols import Data, DataVector, IndexedSum, Mean, ParamVector, Sum
from .report import EXACT_DPS
from .target import computes_in_float32

__all__ = ["EXACT_MAX_COST", "FALLBACK_MAX_COST", "ExactTooLarge", "exact_literals",
           "exact_loss", "exact_residuals"]

#: The largest unrolled loss the oracle differentiates: SymPy operations x entries of ``x``
#: (x entries squared for Hessians). 55_000 takes about 7 s (an MLP of 48 weights, 16 samples).
EXACT_MAX_COST: int = 100_000


_DIFFERENCES = "or use method='richardson'"
# while an unrolling runs: its cost limit, and the other way to check when it is over
_BUDGET: contextvars.ContextVar[tuple[int, str]] = contextvars.ContextVar(
    "exact_budget", default=(EXACT_MAX_COST, _DIFFERENCES))


class ExactTooLarge(NotImplementedError):
    """The unrolled loss would be too big for the SymPy oracle (the message says how big)."""


#: The budget when check_grad consults the oracle for kinks met by another method (~1.5 s).
FALLBACK_MAX_COST: int = 10_000


def _too_big(ops: int, n: int, order: int, what: str) -> None:
    cost = ops * n**order
    limit, otherwise = _BUDGET.get()
    if cost > limit:
        raise ExactTooLarge(
            f"method='exact' unrolls the loss over the data: {what} make about {ops} SymPy "
            f"operations, times {n}{'**2' if order == 2 else ''} parameters = {cost}, more "
            f"than EXACT_MAX_COST={limit}; check on fewer samples (pass "
            f"batch=slice(0, 8) in data=, or slice the columns) {otherwise}")


def _budget(k: Any, max_cost: int | None) -> tuple[int, str]:
    """The cost limit, and what else checks kernel ``k`` when the oracle is refused: differences,
    or for a float32 kernel (whose rounding swamps them) the float64 kernel of the same loss."""
    otherwise = ("or check the float64 kernel of the same loss (dtype='float64') with "
                 "method='richardson': differences cannot check a float32 kernel, whose "
                 "rounding swamps them") if computes_in_float32(k) else _DIFFERENCES
    return (EXACT_MAX_COST if max_cost is None else max_cost), otherwise


def _float(v: Any) -> sp.Float:
    return sp.Float(float(v), EXACT_DPS)


def exact_literals(e: Any) -> Any:
    """``e`` with every Float literal replaced by the Rational of its exact binary value (the
    float64 the kernel computes with): SymPy folds Floats at their own 15 digits, so
    ``diff(1e8*(a - 0.1)**2, a)`` would be ``2e8*a - 2e7`` with the constant rounded, 1e-9 off
    the exact 0 at ``a = 0.1``."""
    floats = e.atoms(sp.Float) if isinstance(e, sp.Basic) else ()
    return e.xreplace({f: sp.Rational(float(f)) for f in floats}) if floats else e


class _ExactSmoother(Smoother):
    """A :class:`Smoother` for expressions with float literals (the array graph's maps): each
    expression's literals are made exact (:func:`exact_literals`) before its kinks are
    resolved; the values substituted for its symbols are left as they are."""

    def __init__(self, point: Mapping[sp.Symbol, sp.Float], policy: Any = None) -> None:
        super().__init__(point, policy)
        self.exact: dict[sp.Expr, sp.Expr] = {}

    def __call__(self, e: sp.Expr, env: Mapping[sp.Symbol, sp.Expr] | None = None) -> sp.Expr:
        lit = self.exact.get(e)
        if lit is None:
            lit = self.exact[e] = exact_literals(e)
        return super().__call__(lit, env)


def _columns(data: Mapping[str, Any], names: tuple[str, ...], per_sample: tuple[str, ...]
             ) -> tuple[dict[str, np.ndarray], int | None]:
    """The data by name (``batch`` applied to the per-sample columns) and the sample count."""
    missing = [c for c in names if c not in data]
    if missing:
        raise ValueError(f"method='exact': data column '{missing[0]}' is missing from data=")
    batch = data.get("batch")
    out, n = {}, None
    for c in names:
        a = np.asarray(data[c])
        if c in per_sample:
            if batch is not None:
                a = a[batch]
            if n is not None and a.shape[0] != n:
                raise ValueError(f"method='exact': column '{c}' has {a.shape[0]} samples, "
                                 f"others {n}")
            n = a.shape[0]
        out[c] = a
    return out, n


def _symbols(n: int) -> list[sp.Symbol]:
    # no assumptions (real=True): SymPy's assumption queries make diff about 4x slower
    return [sp.Symbol(f"_x{i}") for i in range(n)]


_POLICY = re.compile(r"relu'\(0\)=([^,]+), abs'\(0\)=([^,]+), max/min tie=(.+)")


def _policy(k: Any) -> Any:
    """The kernel's KinkPolicy: ``k.policy``, or the one its module records (scalar kernels)."""
    pol = getattr(k, "policy", None)
    if pol is not None:
        return pol
    text = getattr(getattr(k, "module", None), "KINK_POLICY", None)
    m = _POLICY.fullmatch(text) if isinstance(text, str) else None
    if m is None:
        return KinkPolicy()
    return KinkPolicy(relu=float(m[1]), abs=float(m[2]), tie=float(m[3]))


def _point(syms: list[sp.Symbol], x: np.ndarray) -> dict[sp.Symbol, sp.Float]:
    return {s: _float(v) for s, v in zip(syms, x, strict=True)}


def exact_loss(k: Any, x: np.ndarray, data: Mapping[str, Any] | None, order: int = 1,
               max_cost: int | None = None) -> tuple[sp.Expr, list[sp.Symbol]]:
    """The loss of kernel ``k`` as an expression in one symbol per entry of ``x`` (near ``x``),
    refused (:class:`ExactTooLarge`) when ``order`` derivatives of it would cost more than
    ``max_cost`` (default :data:`EXACT_MAX_COST`)."""
    token = _BUDGET.set(_budget(k, max_cost))
    try:
        return _dispatch(k, x, data, order)
    finally:
        _BUDGET.reset(token)


def _dispatch(k: Any, x: np.ndarray, data: Mapping[str, Any] | None, order: int
              ) -> tuple[sp.Expr, list[sp.Symbol]]:
    kind = getattr(k, "kind", "scalar")
    data = dict(data or {})
    if kind == "array":
        return _array_loss(k, x, data, order)
    if kind == "residual":
        return _residual_loss(k, x, data, order)
    if kind == "scalar":
        return _scalar_loss(k, x, data, order)
    raise NotImplementedError(f"method='exact' does not check kernels of kind {kind!r}")


# -- array losses ---------------------------------------------------------------------------

def _array_loss(k: Any, x: np.ndarray, data: dict, order: int
                ) -> tuple[sp.Expr, list[sp.Symbol]]:
    value, syms = _array_value(k, k.problem, k.problem.loss, x, data, order)
    return sp.sympify(value, strict=True), syms


def _array_value(k: Any, prob: Any, root: Any, x: np.ndarray, data: dict, order: int
                 ) -> tuple[Any, list[sp.Symbol]]:
    """The array graph ``root`` of ``prob`` on the data, in one symbol per entry of ``x``."""
    if x.size != prob.size:
        raise ValueError(f"x has {x.size} entries; the loss packs {prob.size}")
    names = tuple(d.name for d in prob.data)
    cols, n = _columns(data, names, tuple(d.name for d in prob.data if d.per_sample))
    n = n or 0
    _too_big(work(root, n), x.size, order, f"{n} samples of the array graph")
    syms = _symbols(x.size)
    env: dict[str, np.ndarray] = {}
    for p, o in zip(prob.params, prob.offsets(), strict=True):
        size = int(np.prod([int(s) for s in p.shape], dtype=np.int64))
        env[p.name] = np.array(syms[o:o + size], dtype=object).reshape(
            tuple(int(s) for s in p.shape))
    for d in prob.data:
        a = cols[d.name]
        if d.role == "index":
            env[d.name] = np.asarray(a).astype(np.int64).astype(object)
        else:
            env[d.name] = np.vectorize(_float, otypes=[object])(a) if a.size else a.astype(object)
    smooth = _ExactSmoother(_point(syms, x), _policy(k))
    return interpret(root, env, n, smooth), syms


# -- residuals ------------------------------------------------------------------------------

def exact_residuals(k: Any, x: np.ndarray, data: Mapping[str, Any] | None,
                    max_cost: int | None = None) -> tuple[list[sp.Expr], list[sp.Symbol]]:
    """Every residual of kernel ``k`` (sample-major, as ``k.residuals``) as an expression in one
    symbol per entry of ``x``, for the Gauss-Newton matrix ``J^T J`` (one derivative each)."""
    token = _BUDGET.set(_budget(k, max_cost))
    try:
        return _residuals(k, x, dict(data or {}), 1)
    finally:
        _BUDGET.reset(token)


def _residual_loss(k: Any, x: np.ndarray, data: dict, order: int
                   ) -> tuple[sp.Expr, list[sp.Symbol]]:
    rs, syms = _residuals(k, x, data, order)
    return sp.Add(*[r**2 for r in rs]) / 2, syms


def _residuals(k: Any, x: np.ndarray, data: dict, order: int
               ) -> tuple[list[sp.Expr], list[sp.Symbol]]:
    if hasattr(k, "model"):  # array residuals: the model's outputs, sample-major
        out, syms = _array_value(k, k.model.problem, k.model.problem.output, x, data, order)
        return list(np.asarray(out, dtype=object).ravel()), syms
    prob = k.problem
    params = list(prob.params)
    if len(params) != x.size:
        raise ValueError(f"x has {x.size} entries; the residuals have {len(params)} parameters")
    names = prob.data_names
    cols, n = _columns(data, names, names)
    rows = n if names else 1
    exprs = [exact_literals(e) for e in prob.exprs]
    per = sum(1 + sp.count_ops(e) for e in exprs)
    _too_big(rows * per, x.size, order, f"{rows} samples x {len(prob.exprs)} residuals")
    syms = _symbols(x.size)
    to_syms = dict(zip(params, syms, strict=True))
    by_col = {d: d.column for d in prob.data_symbols}
    smooth = Smoother(_point(syms, x), _policy(k))  # the kernel's kink policy, as arrays'
    out = []
    for i in range(rows):
        env = to_syms | {d: _float(cols[c][i]) for d, c in by_col.items()}
        out.extend(smooth(e, env) for e in exprs)
    return out, syms


# -- scalar losses ----------------------------------------------------------------------------

def _scalar_loss(k: Any, x: np.ndarray, data: dict, order: int
                 ) -> tuple[sp.Expr, list[sp.Symbol]]:
    expr = exact_literals(k.expr)
    prob = getattr(k, "problem", None)
    scalars = list(prob.params) if prob is not None else _named(expr, k.params)
    vectors = list(getattr(prob, "vectors", ()) or ())
    if not vectors and len(scalars) != x.size:
        raise ValueError(f"x has {x.size} entries; the loss has {len(scalars)} parameters")
    syms = _symbols(x.size)
    subs: dict[Any, Any] = dict(zip(scalars, syms, strict=False))
    vec: dict[str, list[sp.Symbol]] = {}
    if vectors:
        n_vec = k.vector_length(x.size)
        rest = syms[len(scalars):]
        for j, v in enumerate(vectors):
            vec[v.name] = rest[j * n_vec:(j + 1) * n_vec]
    samples = tuple(getattr(k, "_samples", ()) or ())
    names = tuple(getattr(k, "data_names", ()) or ())
    cols, n = _columns(data, names, samples)
    lengths = {f"len_{name}": len(v) for name, v in vec.items()}
    lengths |= {f"len_{c}": len(cols[c]) for c in names if c not in samples}
    ops = 1 + sp.count_ops(expr)
    _too_big(ops * max(1, n or 1) * max([1, *lengths.values()]), x.size, order,
             f"{n or 0} samples and vectors of length {max([0, *lengths.values()])}")

    def element(e: sp.Indexed) -> sp.Expr:
        i = int(e.indices[0])
        base = e.base
        if isinstance(base, ParamVector):
            entries = vec[base.name]
        elif isinstance(base, DataVector):
            entries = [_float(v) for v in cols[base.name]]
        else:
            raise NotImplementedError(f"method='exact' cannot read {e}")
        if not 0 <= i < len(entries):
            raise ValueError(f"method='exact': {e} reads outside 0..{len(entries) - 1}")
        return entries[i]

    def index_sum(term, i, lo, hi) -> sp.Expr:
        ln = {s: lengths[s.name] for s in (lo.free_symbols | hi.free_symbols)
              if s.name in lengths}
        a, b = int(lo.xreplace(ln)), int(hi.xreplace(ln))
        out = []
        for v in range(a, b):
            t = term.xreplace({i: v})
            out.append(t.replace(lambda e: isinstance(e, sp.Indexed), element))
        return sp.Add(*out)

    smooth = Smoother(_point(syms, x), _policy(k))

    def reduce(cls, body) -> sp.Expr:
        if n is None:
            raise ValueError("method='exact': the loss reduces over samples: pass its data")
        out = []
        for r in range(n):
            ds = {d: _float(cols[d.column][r] if d.component is None
                            else cols[d.column][r, d.component])
                  for d in body.free_symbols if isinstance(d, Data)}
            out.append(smooth(body, subs | ds))  # kinks resolved as written, then substituted
        total = sp.Add(*out)
        return total / n if cls is Mean else total

    e = expr.replace(lambda a: isinstance(a, IndexedSum), lambda a: index_sum(*a.args))
    e = e.replace(lambda a: isinstance(a, Mean | Sum),
                  lambda a: reduce(type(a), a.args[0]))
    e = smooth(e, subs)
    left = sorted(s.name for s in e.free_symbols if s not in syms)
    if left:
        raise NotImplementedError(f"method='exact': the loss still has symbols {left} after "
                                  "unrolling (not parameters nor data)")
    return e, syms


def _named(expr: sp.Expr, params: tuple[str, ...]) -> list[sp.Symbol]:
    by_name = {s.name: s for s in expr.free_symbols if isinstance(s, sp.Symbol)}
    return [by_name.get(p, sp.Symbol(p)) for p in params]
