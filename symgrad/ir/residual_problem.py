"""Residual expressions + declared symbols -> a validated :class:`ResidualProblem`.

A residual problem is ``m`` expressions per sample in parameters and per-sample data columns
(``a*exp(-b*t) + c - y``), or ``M`` parameter-only expressions (classic test problems). The
same rules as :func:`symgrad.ir.problem.problem` apply (supported functions, parameter order,
unknown symbols), reusing its checks; reductions over samples have no place in a residual.

>>> import symgrad as sg
>>> a, b = sg.params("a b"); t, y = sg.data("t y")
>>> p = residual_problem(a*sg.exp(-b*t) - y)
>>> p.param_names, p.data_names, p.m
(('a', 'b'), ('t', 'y'), 1)
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import sympy as sp

from ..errors import ProblemError
from ..lang.parse import ExprError, parse_loss
from .problem import (
    MAX_DEPTH,
    Column,
    Named,
    _check_functions,
    _resolve_params,
    data_columns,
    expr_depth,
    too_deep,
)
from .symtypes import (
    Data,
    DataVector,
    IndexedSum,
    Mean,
    Param,
    ParamVector,
    Sum,
    normalize_name,
)

__all__ = ["ResidualProblem", "residual_exprs", "residual_problem"]


@dataclass(frozen=True)
class ResidualProblem(Named):
    """Validated residuals: ``exprs`` are the ``m`` residuals of one sample; a column is 1-D
    (``width`` None: ``col[i]``) or ``(N, width)`` (its components read as ``col[i, j]``)."""

    exprs: tuple[sp.Expr, ...]
    params: tuple[sp.Symbol, ...]
    columns: tuple[Column, ...]
    data_symbols: tuple[Data, ...]

    @property
    def m(self) -> int:
        return len(self.exprs)

    @property
    def data_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def expr(self) -> sp.Expr | sp.Matrix:
        """The residual (one expression) or the column Matrix of them (for display)."""
        return self.exprs[0] if self.m == 1 else sp.Matrix(self.exprs)


def _names(spec) -> list:
    if spec is None:
        return []
    if isinstance(spec, str):
        return [normalize_name(n) for n in spec.replace(",", " ").split()]
    if isinstance(spec, sp.Basic) and not isinstance(spec, sp.MatrixBase):
        return [spec]
    out: list = []
    for s in spec:
        out.extend(list(s) if isinstance(s, sp.MatrixBase) else [s])
    return [normalize_name(s) if isinstance(s, str) else s for s in out]


def _parse(text: str, params, data) -> sp.Expr:
    """A residual given as text, parsed safely (never evaluated) as ``sg.compile``'s CLI does."""
    pn = [p if isinstance(p, str) else getattr(p, "name", p) for p in _names(params)] or None
    dn = [d if isinstance(d, str) else getattr(d, "name", d) for d in _names(data)]
    try:
        return parse_loss(text, params=pn, data=dn)
    except ExprError as exc:
        raise ProblemError(f"residual {text!r}: {exc}") from None


def residual_exprs(resid, params, data) -> list[sp.Expr]:
    """One expression, or a list/tuple/Matrix of them, as a list of SymPy expressions; text
    is parsed by the safe parser, nothing is evaluated (``sympify`` runs strict)."""
    if isinstance(resid, sp.MatrixBase):
        items = list(resid)
    elif isinstance(resid, list | tuple):
        items = []
        for r in resid:
            items.extend(list(r) if isinstance(r, sp.MatrixBase) else [r])
    else:
        items = [resid]
    if not items:
        raise ProblemError("no residuals given: pass an expression or a list of them")
    out = []
    for k, r in enumerate(items):
        if isinstance(r, str):
            r = _parse(r, params, data)
        try:
            e = sp.sympify(r, strict=True)
        except (sp.SympifyError, TypeError):
            raise ProblemError(f"residual {k} must be a SymPy expression, got "
                               f"{type(r).__name__}") from None
        if not isinstance(e, sp.Expr):
            raise ProblemError(f"residual {k} must be a scalar expression, got "
                               f"{type(e).__name__}: {e}")
        out.append(e)
    return out


def _mark_data(exprs: list[sp.Expr], data) -> list[sp.Expr]:
    """Plain symbols named in ``data=`` become 1-D data columns; a parameter there is an error."""
    want = _names(data)
    if not want:
        return exprs
    free = set().union(*(e.free_symbols for e in exprs))
    by_name: dict[str, sp.Symbol] = {}
    for s in free:
        by_name.setdefault(s.name, s)
    rep: dict = {}
    for d in want:
        s = by_name.get(d) if isinstance(d, str) else d
        name = d if isinstance(d, str) else getattr(d, "name", repr(d))
        if s is None or s not in free:
            raise ProblemError(f"data= names '{name}', which is not a symbol of the residuals")
        if isinstance(s, Param):
            raise ProblemError(f"'{name}' is a parameter (sg.params) and cannot be listed in "
                               "data=: declare it with sg.data")
        if not isinstance(s, Data):
            rep[s] = Data(s.name, s.name)
    return [e.xreplace(rep) for e in exprs] if rep else exprs


def _check(e: sp.Expr, k: int) -> None:
    where = f"residual {k}" if k >= 0 else "the residual"
    if expr_depth(e) > MAX_DEPTH:
        raise ProblemError(f"{where} is nested more than {MAX_DEPTH} levels deep")
    for r in sorted(e.atoms(Mean, Sum), key=sp.default_sort_key):
        kind = "mean" if isinstance(r, Mean) else "sum"
        raise ProblemError(
            f"{where} contains the reduction sg.{kind}(...) ({r}): a residual is one value per "
            "sample and the least-squares solver sums the squares itself; remove the reduction")
    if e.has(IndexedSum) or e.has(sp.Indexed):
        raise ProblemError(f"{where} contains an indexed sum or element read: residuals take "
                           "scalar parameters and per-sample data columns only")
    _check_functions(e)


def residual_problem(resid, params: Sequence | None = None,
                     data: Sequence | str | None = None) -> ResidualProblem:
    """Validate residuals (one expression, or a list/tuple/Matrix of them; text is parsed by
    the safe parser) and fix the parameter order (``params``; by default every ``sg.params``
    symbol in declaration order) and the data columns (``sg.data`` symbols, plus plain symbols
    named in ``data``)."""
    try:
        exprs = _mark_data(residual_exprs(resid, params, data), data)
        single = len(exprs) == 1
        for k, e in enumerate(exprs):
            _check(e, -1 if single else k)
        return _problem(exprs, params)
    except RecursionError:
        raise ProblemError(too_deep()) from None


def _problem(exprs: list[sp.Expr], params) -> ResidualProblem:
    free = set().union(*(e.free_symbols for e in exprs))
    vec = sorted({s.name for s in free if isinstance(s, ParamVector | DataVector)})
    if vec:
        raise ProblemError(f"'{vec[0]}' is an indexed vector: residuals take scalar symbols")
    declared = _resolve_params(params, free)
    datas = sorted((s for s in free if isinstance(s, Data)), key=lambda s: (s.column, s.name))
    unknown = sorted(s.name for s in free if not isinstance(s, Data) and s not in declared)
    if unknown:
        raise ProblemError(
            f"symbol '{unknown[0]}' is neither a parameter nor data: declare it with "
            f"sg.params('{unknown[0]}') or sg.data('{unknown[0]}'), list it in params= or "
            "data=, or substitute a number")
    if not declared:
        raise ProblemError("the residuals have no parameters to fit")
    absent = [p.name for p in declared if p not in free]
    if absent:
        warnings.warn(f"parameter(s) {', '.join(absent)} do not appear in the residuals: "
                      "their Jacobian column is 0", stacklevel=3)
    columns = data_columns(datas, "the residuals")
    for p in declared:
        if p.name in columns:
            raise ProblemError(f"'{p.name}' names both a parameter and a data column")
    return ResidualProblem(tuple(exprs), tuple(declared), tuple(columns.values()), tuple(datas))
