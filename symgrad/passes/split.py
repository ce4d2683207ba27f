"""Split an array loss at its sums over samples: ``L(x) = G(x) + sum over chunks of C(x; chunk)``.

A loss reads its samples through sample reductions ``R_k`` (``sg.mean``/``sg.sum`` over the
sample axis, or a contraction over it): ``L = F(R_1, ..., R_k, x)``. When ``F`` is affine in the
``R_k`` (any coefficients of ``x``: ``mean(loss) + penalty``, ``lam * mean(...)``), the loss is

- the **chunk part** ``C``: the terms of ``F`` linear in the ``R_k``, which is itself a sum over
  samples, so its value, gradient and Hessian-vector products on the whole data are the sums of
  those on any chunks of it; the number of samples ``N`` of a mean (:data:`~.graph.SAMPLES`) is
  read from a scalar parameter :data:`N_PARAM` (the total, given by the caller), so one compiled
  module serves every chunk and every data size;
- the **rest** ``G = F(0, ..., 0, x)``: the data-free terms (penalties), computed once.

Anything else is refused with :class:`SplitError` naming the part: a max or log-sum-exp over the
samples, a nonlinear function of a mean (``sqrt(mean(r**2))``), a product of two means, a
per-sample term reading a mean (``x - mean(x)``), or data arrays without a sample axis.

>>> import symgrad as sg
>>> w = sg.params("w", shape=(2,)); X = sg.data("X", shape=(2,)); y = sg.data("y")
>>> s = split(sg.mean((X @ w - y)**2) + 0.1 * sg.sum(w**2))
>>> s.chunk.shape, s.rest.shape, sorted(p.name for p in s.chunk_params())
((), (), ['sg_N', 'w'])
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from ..ad.array import topo
from ..errors import ProblemError
from ..ir.graph import (
    SAMPLES,
    Contract,
    Gather,
    Leaf,
    Map,
    Node,
    Pad,
    Reduce,
    Scatter,
    Window,
    contract,
    map_,
    reduce_,
)

__all__ = ["N_PARAM", "Split", "SplitError", "split"]

#: The name of the scalar parameter holding the total number of samples in the chunk part.
N_PARAM = "sg_N"
_NLEAF = Leaf("param", N_PARAM, ())
_ZERO = sp.Integer(0)


class SplitError(ProblemError, NotImplementedError):
    """A loss that is not a sum over samples plus data-free terms (the message says which part)."""


@dataclass(frozen=True)
class Split:
    """``loss = rest + chunk`` summed over chunks: ``chunk`` is a scalar sum over samples (reading
    the parameter :data:`N_PARAM`), ``rest`` a data-free scalar node or a SymPy number."""

    chunk: Node
    rest: Node | sp.Expr

    def chunk_params(self) -> list[Leaf]:
        return [n for n in topo([self.chunk]) if isinstance(n, Leaf) and n.role == "param"]

    def rest_params(self) -> list[Leaf]:
        if not isinstance(self.rest, Node):
            return []
        return [n for n in topo([self.rest]) if isinstance(n, Leaf) and n.role == "param"]


def _short(n: Node, limit: int = 90) -> str:
    text = repr(n)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def split(loss: Node) -> Split:
    """The chunk part and the rest of the scalar array loss ``loss`` (see the module)."""
    order = topo([loss])
    for n in order:
        if isinstance(n, Leaf) and n.role in ("data", "index") and not n.per_sample:
            raise SplitError(f"data array '{n.name}' has no sample axis (samples=False): on Dask "
                             "columns every data array must have one row per sample")
    sums: set[int] = set()
    for n in order:
        if n.per_sample or not any(a.per_sample for a in n.args):
            continue
        if isinstance(n, Reduce) and n.op != "sum":
            what = "sg.max" if n.op == "max" else "sg.logsumexp"
            raise SplitError(f"{what} over the samples ({_short(n)}) is not a sum over samples, "
                             "so it cannot be computed chunk by chunk on Dask columns: reduce "
                             "over the samples with sg.mean or sg.sum")
        if not isinstance(n, Reduce | Contract | Scatter):
            raise SplitError(f"{_short(n)} reduces over the samples in a way Dask columns do not "
                             "support (only sums and means over the samples)")
        sums.add(id(n))
    if not sums:
        raise SplitError("the loss has no reduction over samples (sg.mean/sg.sum of a term that "
                         "reads a data array): nothing to compute on Dask columns")
    dep: set[int] = set()  # nodes that depend on a sample reduction
    for n in order:
        reads = any(id(a) in dep for a in n.args)
        if reads and (n.per_sample or id(n) in sums):
            raise SplitError(
                f"the per-sample term {_short(n)} reads a reduction over the samples (a "
                "batch statistic such as x - mean(x)): on Dask columns the samples may only "
                "be reduced once, by sg.mean or sg.sum, at the outside of the loss")
        if reads or id(n) in sums:
            dep.add(id(n))
    return _Splitter(sums, dep).run(loss)


class _Splitter:
    """Rebuilds the graph: :meth:`full` for nodes free of sample reductions (SAMPLES read from
    :data:`N_PARAM`), :meth:`parts` ``(linear part, constant part)`` for those depending on one."""

    def __init__(self, sums: set[int], dep: set[int]) -> None:
        self.sums, self.dep = sums, dep
        self.memo: dict[int, Node] = {}
        self.pmemo: dict[int, tuple] = {}

    def run(self, loss: Node) -> Split:
        lin, const = self.parts(loss)
        return Split(lin, const)

    def full(self, n: Node) -> Node:
        got = self.memo.get(id(n))
        if got is None:
            got = self.memo[id(n)] = _remake(n, [self.full(a) for a in n.args])
        return got

    def parts(self, n: Node) -> tuple[Node, Node | sp.Expr]:
        """``(lin, const)`` with ``n == const + lin`` and ``lin`` linear in the reductions."""
        got = self.pmemo.get(id(n))
        if got is None:
            got = self.pmemo[id(n)] = self._parts(n)
        return got

    def _parts(self, n: Node):
        if id(n) in self.sums:
            return self.full(n), _ZERO
        if isinstance(n, Map):
            return self._map(n)
        dargs = [a for a in n.args if id(a) in self.dep]
        if isinstance(n, Contract):
            if len(dargs) == 2:
                raise SplitError(f"{_short(n)} multiplies two reductions over the samples: not "
                                 "a sum over samples, so not computable chunk by chunk on Dask "
                                 "columns")
            a, b = n.args
            la, lb, lo = n.labels
            if id(a) in self.dep:
                lin, const = self.parts(a)
                other = self.full(b)
                return (contract(lin, other, la, lb, lo),
                        _ZERO if _is_zero(const) else contract(const, other, la, lb, lo))
            lin, const = self.parts(b)
            other = self.full(a)
            return (contract(other, lin, la, lb, lo),
                    _ZERO if _is_zero(const) else contract(other, const, la, lb, lo))
        if isinstance(n, Reduce):
            if n.op != "sum":
                what = "sg.max" if n.op == "max" else "sg.logsumexp"
                raise SplitError(f"{what} of a reduction over the samples ({_short(n)}): the "
                                 "loss must be affine in its sums and means over samples on "
                                 "Dask columns")
            lin, const = self.parts(n.args[0])
            return (reduce_("sum", lin, n.keep),
                    _ZERO if _is_zero(const) else reduce_("sum", const, n.keep))
        if isinstance(n, Window | Pad):
            lin, const = self.parts(n.args[0])
            return (type(n)(lin, n.spec, n.shape),
                    _ZERO if _is_zero(const) else type(n)(const, n.spec, n.shape))
        raise SplitError(f"{_short(n)} uses a reduction over the samples in a way Dask columns "
                         "do not support")

    def _map(self, n: Map):
        d = [k for k, a in enumerate(n.args) if id(a) in self.dep]
        dsyms = {_ph(k) for k in d}
        for k in d:
            coef = sp.diff(n.expr, _ph(k))
            if coef.free_symbols & dsyms or coef.has(sp.Derivative, sp.Subs):
                raise SplitError(
                    f"the loss is not affine in its reductions over the samples: "
                    f"{_short(n)} applies {n.expr} to one (e.g. sqrt(mean(r**2)) or "
                    "log(mean(...))). On Dask columns an array loss must be a sum of means/sums "
                    "over samples times data-free factors, plus data-free terms")
        lin_expr = sp.Add(*[sp.diff(n.expr, _ph(k)) * _ph(k) for k in d])
        lin_args, const_args, zero = [], [], {}
        for k, a in enumerate(n.args):
            if k in d:
                lin, const = self.parts(a)
                lin_args.append(lin)
                if _is_zero(const):
                    zero[_ph(k)] = _ZERO
                    const_args.append(a)  # unused once replaced by 0 (map_ drops it)
                else:
                    const_args.append(const)
            else:
                full = self.full(a)
                lin_args.append(full)
                const_args.append(full)
        lin = _map(lin_expr, lin_args, n.axes, n.shape)
        const = _map(n.expr.xreplace(zero), const_args, n.axes, n.shape)
        return lin, const


def _ph(k: int) -> sp.Symbol:
    return sp.Symbol(f"_a{k}", real=True)


def _is_zero(c) -> bool:
    return isinstance(c, sp.Expr) and not isinstance(c, Node) and c == 0


def _map(expr: sp.Expr, args: list, axes: tuple, shape: tuple) -> Node | sp.Expr:
    """A Map of ``expr`` over ``args`` (SAMPLES read from :data:`N_PARAM`); a scalar constant
    stays a SymPy number."""
    args, axes = list(args), list(axes)
    if expr.has(SAMPLES):
        expr = expr.xreplace({SAMPLES: _ph(len(args))})
        args.append(_NLEAF)
        axes.append(())
    used = {s for s in expr.free_symbols if s.name.startswith("_a")}
    if not used and shape == ():
        return expr
    if not used:
        raise SplitError("a constant array term in the loss is not supported on Dask columns")
    return map_(expr, list(zip(args, axes, strict=True)), shape)


def _remake(n: Node, args: list[Node]) -> Node:
    """``n`` with new arguments (Maps reading SAMPLES from :data:`N_PARAM`)."""
    if isinstance(n, Leaf):
        return n
    if isinstance(n, Map):
        out = _map(n.expr, args, n.axes, n.shape)
        if not isinstance(out, Node):
            raise SplitError(f"{_short(n)} is a constant: not supported on Dask columns")
        return out
    if isinstance(n, Contract):
        return Contract(args[0], args[1], n.labels, n.shape)
    if isinstance(n, Reduce):
        return Reduce(n.op, args[0], n.keep)
    if isinstance(n, Window | Pad):
        return type(n)(args[0], n.spec, n.shape)
    if isinstance(n, Gather):
        return Gather(args[0], args[1])
    if isinstance(n, Scatter):
        return Scatter(args[0], args[1], n.shape)
    raise AssertionError(f"unknown node kind {type(n).__name__}")
