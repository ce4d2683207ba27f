"""Expression + declared symbols -> a validated :class:`Problem`.

This is where bad input is caught, in the user's terms: a vector-valued loss, a symbol that is
neither a parameter nor data, an unsupported function, data outside a reduction, an element-wise
read outside an index sum.

>>> import symgrad as sg
>>> a, b = sg.params("a b"); t, y = sg.data("t y")
>>> p = problem(sg.mean((a*t + b - y)**2) + a**2)
>>> [s.name for s in p.params], [c.name for c in p.columns], len(p.reductions)
(['a', 'b'], ['t', 'y'], 1)
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import sympy as sp

from ..errors import ProblemError
from ..lang.limits import MAX_DIGITS, _too_big
from .functions import ANALYTIC, SUPPORTED
from .symtypes import (
    Data,
    DataVector,
    Index,
    IndexedSum,
    Mean,
    Param,
    ParamVector,
    Reduction,
    Sum,
    declaration_order,
)

__all__ = ["Column", "Problem", "ProblemError", "ReductionTerm", "VectorSum", "listed", "problem"]


@dataclass(frozen=True)
class Column:
    """A data column: ``width`` is ``None`` for a 1-D array, ``k`` for an ``(N, k)`` array."""

    name: str
    width: int | None


@dataclass(frozen=True)
class ReductionTerm:
    """``symbol`` stands for ``mean``/``sum`` over samples of the per-sample ``expr``."""

    kind: str
    expr: sp.Expr
    symbol: sp.Symbol


@dataclass(frozen=True)
class VectorSum:
    """``symbol`` stands for ``sum_{index=lo}^{hi-1} term`` over indexed parameter vectors."""

    term: sp.Expr
    index: Index
    lo: sp.Expr
    hi: sp.Expr
    symbol: sp.Symbol


class Named:
    """``param_names``: the names of a problem's ``params``, in packing order."""

    params: tuple

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)


@dataclass(frozen=True)
class Problem(Named):
    """A validated loss: ``outer`` is the loss with each reduction replaced by its symbol."""

    expr: sp.Expr
    outer: sp.Expr
    params: tuple[sp.Symbol, ...]
    columns: tuple[Column, ...]
    data_symbols: tuple[Data, ...]
    reductions: tuple[ReductionTerm, ...]
    vectors: tuple[ParamVector, ...] = ()
    vector_sums: tuple[VectorSum, ...] = ()
    #: Element-wise data columns (``sg.data("y", indexed=True)``) read inside index sums.
    elements: tuple[DataVector, ...] = ()

    @property
    def analytic(self) -> bool:
        """No kinks anywhere: complex-step differentiation is exact."""
        return _analytic(self.expr)


def _analytic(e: sp.Basic) -> bool:
    for f in e.atoms(sp.Function):
        if isinstance(f, Reduction | IndexedSum):
            continue
        if type(f) not in ANALYTIC:
            return False
    return not e.has(sp.Piecewise, sp.Abs, sp.Max, sp.Min)


def _from_callable(fn: Callable) -> sp.Expr:
    try:
        names = list(inspect.signature(fn).parameters)
    except (TypeError, ValueError) as exc:
        raise ProblemError(f"cannot read the arguments of {fn!r}: pass a SymPy expression") from exc
    if not names:
        raise ProblemError(f"{fn.__name__}() takes no arguments: it has no parameters to fit")
    try:
        out = fn(*[Param.declare(n) for n in names])
    except TypeError as exc:  # NumPy/math functions or a Python branch on a symbol
        raise ProblemError(
            f"{fn.__name__}() is called with symbolic parameters ({', '.join(names)}), and "
            f"failed with: {exc}. Inside the loss use sg.exp, sg.log, sg.sqrt, sg.tanh... (not "
            "np.exp or math.exp), and sg.max, sg.relu, sg.abs or sympy.Piecewise "
            "instead of an if on a parameter") from exc
    if isinstance(out, tuple):
        raise ProblemError(f"{fn.__name__}() returned a tuple: return only the scalar loss "
                           "(symgrad computes the gradient itself)")
    return out


def _as_scalar(loss) -> sp.Expr:
    if isinstance(loss, sp.MatrixBase | list | tuple):
        shape = loss.shape if isinstance(loss, sp.MatrixBase) else (len(loss),)
        if shape in ((1, 1), (1,)):
            return _as_scalar(loss[0])
        raise ProblemError(f"the loss must be a scalar, got shape {shape}: reduce it to one number "
                           "(e.g. a sum), or use sg.jacobian(exprs, wrt) for vector functions")
    if isinstance(loss, str):
        shown = loss if len(loss) <= 60 else loss[:57] + "..."
        raise ProblemError(f"the loss is the string {shown!r}: strings are never evaluated; "
                           "build it from sg.params/sg.data symbols, or parse text with "
                           "symgrad.lang.parse.parse_loss")
    try:
        e = sp.sympify(loss, strict=True)
    except (sp.SympifyError, TypeError) as exc:
        raise ProblemError(
            f"the loss must be a SymPy expression, got {type(loss).__name__}") from exc
    if not isinstance(e, sp.Expr):
        raise ProblemError(f"the loss must be a scalar expression, got {type(e).__name__}: {e}")
    return e


def _check_functions(e: sp.Expr) -> None:
    for f in sorted(e.atoms(sp.Function), key=sp.default_sort_key):
        if isinstance(f, Reduction | IndexedSum) or type(f) in SUPPORTED:
            continue
        name = getattr(f, "name", None) or type(f).__name__
        raise ProblemError(
            f"symgrad has no code for the function '{name}' (in {f}); supported: "
            + ", ".join(sorted(getattr(c, "__name__", str(c)) for c in SUPPORTED))
            + ". Rewrite it with these, or add a printer entry.")
    for kind in (sp.Derivative, sp.Integral, sp.Sum, sp.Product):
        if e.has(kind):
            raise ProblemError(f"the loss contains an unevaluated {kind.__name__}: evaluate it "
                               "(.doit()) or use sg.sum / sg.mean for reductions over samples")
    if e.has(sp.I) or e.has(sp.zoo) or e.has(sp.nan) or e.has(sp.oo) or e.has(-sp.oo):
        raise ProblemError("the loss contains a complex, infinite or NaN constant")
    _check_constants(e)


def _check_constants(e: sp.Expr) -> None:
    """Exact constants of at most MAX_DIGITS digits (far larger integers only slow SymPy down,
    and Python refuses to print them) and floats within float64, as the parser's limits."""
    for r in e.atoms(sp.Rational):
        if _too_big(r):
            bits = max(abs(int(r.p)).bit_length(), int(r.q).bit_length())
            raise ProblemError(f"the loss contains an exact constant of about {int(bits/3.32)} "
                               f"digits (at most {MAX_DIGITS}); write it as a float or rescale")
    for f in e.atoms(sp.Float):
        if _too_big(f):
            raise ProblemError(f"the loss contains the constant {sp.N(f, 3)}, beyond float64 "
                               "(about 1.8e308): rescale the loss")


def _order_key(s) -> tuple:
    return (declaration_order(s), s.name)


def problem(loss, params: Sequence | None = None) -> Problem:
    """Validate ``loss`` and split it into an outer expression and its reductions.

    ``loss`` is a scalar SymPy expression (or a Python function of its parameters, called once
    with symbols named after its arguments). ``params`` fixes the packing order of ``x``; by
    default every parameter symbol in the loss, in declaration order.
    """
    expr = _as_scalar(_from_callable(loss) if callable(loss) and not isinstance(loss, sp.Basic)
                      else loss)
    depth = expr_depth(expr)
    if depth > MAX_DEPTH:
        raise ProblemError(f"the loss is nested {depth} levels deep (at most {MAX_DEPTH}): "
                           "SymPy and the code generator recurse once per level")
    try:
        return _problem(expr, params)
    except RecursionError:
        raise ProblemError(too_deep()) from None


#: Deepest expression tree accepted (every stage after this one recurses once per level).
MAX_DEPTH = 200


def expr_depth(e: sp.Basic) -> int:
    """Depth of an expression tree, computed without recursion (shared subtrees once)."""
    depth: dict = {}
    stack = [(e, False)]
    while stack:
        node, done = stack.pop()
        if node in depth:
            continue
        if done or not node.args:
            depth[node] = 1 + max((depth[a] for a in node.args), default=0)
            continue
        stack.append((node, True))
        stack.extend((a, False) for a in node.args if a not in depth)
    return depth[e]


def too_deep() -> str:
    """The message for an expression nested beyond Python's recursion limit."""
    return ("the loss is nested too deeply for SymPy (Python's recursion limit): flatten it, "
            "e.g. build long sums with sp.Add(*terms) instead of nesting them")


def _problem(expr: sp.Expr, params) -> Problem:
    _check_functions(expr)

    reductions: list[ReductionTerm] = []
    vector_sums: list[VectorSum] = []
    repl: dict = {}
    for r in sorted(expr.atoms(Mean, Sum), key=sp.default_sort_key):
        inner = r.args[0]
        if inner.has(Mean, Sum):
            raise ProblemError(f"reductions cannot be nested: {r}")
        if inner.has(IndexedSum):
            raise ProblemError(f"an indexed sum cannot appear inside a reduction over samples: {r}")
        if inner.has(sp.Indexed):
            ind = sorted(inner.atoms(sp.Indexed), key=sp.default_sort_key)[0]
            raise ProblemError(f"{ind} appears inside a reduction over samples ({r}): element-wise "
                               "reads belong in sg.sum(term, (i, lo, hi))")
        sym = sp.Symbol(f"R{len(reductions)}", real=True)
        reductions.append(ReductionTerm("mean" if isinstance(r, Mean) else "sum", inner, sym))
        repl[r] = sym
    for s in sorted(expr.atoms(IndexedSum), key=sp.default_sort_key):
        vector_sums.append(_vector_sum(s, len(vector_sums)))
        repl[s] = vector_sums[-1].symbol
    outer = expr.xreplace(repl) if repl else expr

    stray = sorted((s for s in outer.free_symbols if isinstance(s, Data)), key=lambda s: s.name)
    if stray:
        raise ProblemError(
            f"data column '{stray[0].column}' appears outside a reduction: wrap the per-sample "
            "part in sg.mean(...) or sg.sum(...)")
    if outer.has(sp.Indexed):
        ind = sorted(outer.atoms(sp.Indexed), key=sp.default_sort_key)[0]
        raise ProblemError(f"{ind} appears outside sg.sum(term, (i, lo, hi)): element-wise reads "
                           "need the index range of a sum")

    bases = {ind.base for v in vector_sums for ind in v.term.atoms(sp.Indexed)}
    vectors = sorted((b for b in bases if isinstance(b, ParamVector)), key=_order_key)
    elements = sorted((b for b in bases if isinstance(b, DataVector)), key=lambda b: b.name)
    inner_syms = set().union(*(r.expr.free_symbols for r in reductions),
                             *(v.term.free_symbols - {v.index} for v in vector_sums),
                             *(v.hi.free_symbols | v.lo.free_symbols for v in vector_sums))
    lengths = {v.length for v in (*vectors, *elements)}
    free = (outer.free_symbols - {r.symbol for r in reductions}
            - {v.symbol for v in vector_sums}) | inner_syms
    free = {s for s in free if not isinstance(s, sp.Indexed | sp.IndexedBase | sp.Idx)}
    free -= lengths | {v.label for v in (*vectors, *elements)}
    data_syms = tuple(sorted((s for s in free if isinstance(s, Data)),
                             key=lambda s: (s.column, s.component or 0)))
    declared = _resolve_params(params, free)
    unknown = sorted(s.name for s in free if not isinstance(s, Data) and s not in declared
                      and not isinstance(s, Index))
    if unknown:
        raise ProblemError(
            f"symbol '{unknown[0]}' is neither a parameter nor data: declare it with "
            f"sg.params('{unknown[0]}') or sg.data('{unknown[0]}'), list it in params=, "
            "or substitute a number" + (f" (also unknown: {', '.join(unknown[1:])})"
                                        if len(unknown) > 1 else ""))
    absent = [p.name for p in declared if p not in free]
    if absent:
        warnings.warn(f"parameter(s) {', '.join(absent)} do not appear in the loss: "
                      "their gradient is 0", stacklevel=3)

    columns = data_columns(data_syms, "the loss")
    if reductions and not columns:  # the number of samples would be unknown
        r = reductions[0]
        raise ProblemError(
            f"sg.{r.kind}({r.expr}) reads no data column: a reduction over samples needs "
            "per-sample data (sg.data); write a parameter-only term without sg.mean/sg.sum")
    _check_element_names(elements, columns, vectors, declared)
    return Problem(expr=expr, outer=outer, params=tuple(declared), columns=tuple(columns.values()),
                   data_symbols=data_syms, reductions=tuple(reductions), vectors=tuple(vectors),
                   vector_sums=tuple(vector_sums), elements=tuple(elements))


def data_columns(data_syms, where: str) -> dict[str, Column]:
    """The columns the data symbols read, by name; one name in two layouts is an error."""
    columns: dict[str, Column] = {}
    for d in data_syms:
        col = Column(d.column, d.width)
        old = columns.setdefault(d.column, col)
        if old != col:
            one, two = sorted((old, col), key=lambda c: c.width or 0)
            raise ProblemError(
                f"data column '{d.column}' is declared twice with different layouts "
                f"({_layout(one)} and {_layout(two)}) and both appear in {where}: an "
                "expression built before re-declaring it still holds the old symbols; rebuild "
                "it from one declaration")
    return columns


def _layout(c: Column) -> str:
    return "1-D" if c.width is None else f"with shape=({c.width},)"


def _check_element_names(elements, columns, vectors, declared) -> None:
    """An element-wise column is passed by name like every column: its name must be its own."""
    taken = {**{c: "a per-sample data column" for c in columns},
             **{v.name: "an indexed parameter vector" for v in vectors},
             **{p.name: "a parameter" for p in declared}}
    for e in elements:
        if e.name in taken:
            raise ProblemError(f"'{e.name}' names both an element-wise data column and "
                               f"{taken[e.name]}: rename one of them")


def listed(params):
    """``params=`` as a sequence: one string is names separated by spaces or commas, as
    ``sg.params("a b")`` and ``--params "a b"`` take them."""
    return params.replace(",", " ").split() if isinstance(params, str) else params


def _resolve_params(params, free) -> list[sp.Symbol]:
    if params is None:
        return sorted((s for s in free if isinstance(s, Param)), key=_order_key)
    params = listed(params)
    if isinstance(params, sp.Symbol):
        params = [params]
    flat: list = []
    for p in params:
        flat.extend(list(p) if isinstance(p, sp.MatrixBase) else [p])
    by_name = {s.name: s for s in free}
    out: list[sp.Symbol] = []
    for p in flat:
        if isinstance(p, str):
            if p not in by_name:
                raise ProblemError(f"params= names '{p}', which is not a symbol of the loss")
            p = by_name[p]
        if isinstance(p, ParamVector):
            continue
        if not isinstance(p, sp.Symbol) or isinstance(p, Data):
            raise ProblemError(f"params= must list parameter symbols or names, got {p!r}")
        if p in out:
            raise ProblemError(f"parameter '{p.name}' is listed twice in params=")
        out.append(p)
    return out


def _vector_sum(s: IndexedSum, k: int) -> VectorSum:
    term, i, lo, hi = s.args
    for ind in term.atoms(sp.Indexed):
        if not isinstance(ind.base, ParamVector | DataVector):
            raise ProblemError(f"{ind} indexes something that is neither an indexed parameter "
                               "vector (sg.params(name, indexed=True)) nor an element-wise data "
                               "column (sg.data(name, indexed=True))")
        if len(ind.indices) != 1:
            raise ProblemError(f"{ind}: vectors take one index, like x[{i}]")
        (off,) = ind.indices
        if not (off - i).is_Integer:
            raise ProblemError(f"{ind}: indices must be the summation index plus a constant, "
                               f"like x[{i}] or x[{i}+1]")
    if term.has(Mean, Sum, IndexedSum):
        raise ProblemError(f"reductions cannot be nested inside sg.sum(..., ({i}, ...))")
    cols = sorted({d.column for d in term.free_symbols if isinstance(d, Data)})
    if cols:
        raise ProblemError(f"per-sample data column '{cols[0]}' inside sg.sum(..., ({i}, ...)): "
                           f"declare a column read element by element with "
                           f"sg.data('{cols[0]}', indexed=True) and read it as {cols[0]}[{i}]")
    return VectorSum(term, i, sp.sympify(lo, strict=True), sp.sympify(hi, strict=True),
                     sp.Symbol(f"S{k}", real=True))
