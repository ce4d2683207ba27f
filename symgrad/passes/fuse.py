"""Fuse a small array loss into one pass over the samples: the graph unrolled per sample.

An array loss reads its samples through sample reductions (``sg.mean``/``sg.sum`` over the
sample axis, or a contraction over it). When every per-sample array is small (a linear or
logistic model, a 3-output least-squares fit), the fastest code is not one loop (or one BLAS
call) per node and per derivative, but **one loop over the samples** that computes the loss
and all its derivatives from a few locals per sample: the sample loop that
:mod:`symgrad.backend.numba.samples` prints from :class:`~symgrad.ad.derive.Builder` programs.

:func:`unroll` is that lowering's front half: it interprets the graph for **one generic
sample**, element by element, with SymPy scalars. Parameter arrays become one symbol per entry
of ``x`` (named like :attr:`~symgrad.runtime.base.Kernel.labels`: ``W[0, 1]``), per-sample data
arrays become data components (``X[:, 1]`` is the component 1 of column ``X``), a reduction over
the samples becomes ``Sum``/``Mean`` of the per-sample expression. The result is the scalar
loss the scalar front end (:func:`symgrad.ir.problem.problem`) accepts, with the same kink
functions (one :func:`~symgrad.ad.derive.local_derivative` for both paths).

:func:`fusable` is the decision: the per-sample work must be small (:data:`MAX_PARAMS` entries
of ``x``, :data:`MAX_WIDTH` entries per sample in any array, :data:`MAX_OPS` operations in all),
and the graph must use only what one sample loop expresses: no row gathers (``U[i]``), no
whole (non-sample) data arrays, no max or log-sum-exp over the samples, no max reductions
(their ties share the derivative equally, an n-ary chain does not). Larger losses (an MLP)
keep the array lowering: BLAS contractions over the sample axis.

>>> import symgrad as sg
>>> w = sg.params("w", shape=(2,)); X = sg.data("X", shape=(2,)); y = sg.data("y")
>>> u = unroll(sg.mean((X @ w - y)**2))
>>> [str(s) for s in u.params], u.expr
(['w[0]', 'w[1]'], mean((X[:, 0]*w[0] + X[:, 1]*w[1] - y)**2))
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import sympy as sp

from ..ad.array import topo
from ..ir.array_problem import ArrayProblem, array_problem
from ..ir.functions import logsumexp
from ..ir.graph import SAMPLES, N, Node, ph
from ..ir.symtypes import Data, Mean, Param, Sum

__all__ = ["MAX_OPS", "MAX_PARAMS", "MAX_WIDTH", "Unrolled", "fusable", "unroll"]

#: At most this many entries of ``x`` (the fused loop keeps one gradient total per entry).
MAX_PARAMS = 32
#: At most this many entries per sample in any per-sample array.
MAX_WIDTH = 64
#: At most this many SymPy operations in the unrolled per-sample loss.
MAX_OPS = 1000


@dataclass(frozen=True)
class Unrolled:
    """A graph for one generic sample: ``expr`` (a scalar loss with ``Mean``/``Sum`` over the
    samples, or the per-sample entries of an output in C order), in ``params`` (one symbol per
    entry of ``x``, in packing order)."""

    problem: ArrayProblem
    expr: sp.Expr | tuple[sp.Expr, ...]
    params: tuple[sp.Symbol, ...]


def fusable(prob: ArrayProblem, root: Node | None = None) -> str | None:
    """``None`` when the graph lowers to one sample loop, else why not (for reports)."""
    root = prob.loss if root is None else root
    if prob.size > MAX_PARAMS:
        return f"{prob.size} parameters (the fused sample loop takes at most {MAX_PARAMS})"
    for n in topo([root]):
        if n.kind in ("gather", "scatter"):
            return "rows gathered per sample (U[i]) run as array code"
        if n.kind == "leaf" and n.role != "param" and not n.per_sample:
            return f"'{n.name}' is a whole data array, not one row per sample"
        if n.kind == "reduce" and n.op == "max":
            return "a max reduction (ties share its derivative equally) runs as array code"
        if n.kind == "reduce" and n.args[0].per_sample and 0 not in n.keep and n.op != "sum":
            return f"a {n.op} over the samples is not a sum over samples"
        if n.per_sample and math.prod(n.shape[1:]) > MAX_WIDTH:
            return (f"a per-sample array of {math.prod(n.shape[1:])} entries (the fused "
                    f"sample loop takes at most {MAX_WIDTH})")
    return None


def unroll(loss, params: Sequence | None = None, root: Node | None = None) -> Unrolled:
    """``loss`` (or ``root``, a per-sample output of the same parameters) for one sample.

    Raises ValueError with :func:`fusable`'s reason when the graph does not fuse, or when the
    unrolled loss has more than :data:`MAX_OPS` operations."""
    prob = loss if isinstance(loss, ArrayProblem) else array_problem(loss, params)
    root = prob.loss if root is None else root
    why = fusable(prob, root)
    if why is not None:
        raise ValueError(f"not fused: {why}")
    syms: list[sp.Symbol] = []
    env: dict[str, np.ndarray] = {}
    for p in prob.params:
        cells = np.empty(p.shape, dtype=object)
        for i in np.ndindex(*p.shape):
            cells[i] = (sp.Symbol(f"{p.name}[{', '.join(map(str, i))}]", real=True) if i
                        else Param(p.name))  # a scalar: the symbol index sums read too
            syms.append(cells[i])
        env[p.name] = cells
    for d in prob.data:
        width = math.prod(d.shape[1:])
        cells = np.empty((1, *d.shape[1:]), dtype=object)
        for j, i in enumerate(np.ndindex(*d.shape[1:])):
            cells[(0, *i)] = (Data(d.name, d.name) if not i else
                              Data(f"{d.name}[:, {j}]", d.name, j, width))
        env[d.name] = cells
    val: dict[int, np.ndarray] = {}
    for n in topo([root]):
        val[id(n)] = _RULES[n.kind](n, [val[id(a)] for a in n.args], env)
    out = val[id(root)]
    if root.shape == ():
        expr = _means(out[()])
        ops = sp.count_ops(expr)
    else:
        expr = tuple(_means(e) for e in out.ravel())
        ops = sum(sp.count_ops(e) for e in expr)
    if ops > MAX_OPS:
        raise ValueError(f"not fused: {ops} operations per sample (at most {MAX_OPS})")
    return Unrolled(prob, expr, tuple(syms))


def _one(shape: tuple) -> tuple[int, ...]:
    """A shape with the sample axis as one generic sample."""
    return tuple(1 if s == N else int(s) for s in shape)


def _leaf(n, args, env) -> np.ndarray:
    return env[n.name]


def _map(n, args, env) -> np.ndarray:
    out = np.empty(_one(n.shape), dtype=object)
    for idx in np.ndindex(*out.shape):
        out[idx] = n.expr.xreplace({ph(k): a[tuple(idx[j] for j in axes)]
                                    for k, (a, axes) in enumerate(zip(args, n.axes,
                                                                      strict=True))})
    return out


def _contract(n, args, env) -> np.ndarray:
    letters = {c: chr(97 + k) for k, c in enumerate(dict.fromkeys("".join(n.labels)))}
    la, lb, lo = ("".join(letters[c] for c in lab) for lab in n.labels)
    out = np.asarray(np.einsum(f"{la},{lb}->{lo}", args[0], args[1], dtype=object),
                     dtype=object).reshape(_one(n.shape))
    a, b = n.args
    if (a.per_sample or b.per_sample) and not n.per_sample:  # contracted over the samples
        out = _each(out, Sum)
    return out


def _reduce(n, args, env) -> np.ndarray:
    (z,) = args
    rest = tuple(j for j in range(z.ndim) if j not in n.keep)
    shape = _one(n.shape)
    flat = np.transpose(z, n.keep + rest).reshape((*shape, -1))
    out = np.empty(shape, dtype=object)
    for idx in np.ndindex(*shape):
        items = list(flat[idx])
        out[idx] = sp.Add(*items) if n.op == "sum" else logsumexp(*items)
    if n.args[0].per_sample and not n.per_sample:  # a sum over the samples
        out = _each(out, Sum)
    return out


def _window(n, args, env) -> np.ndarray:
    (a,) = args
    key: list = [slice(None)] if n.args[0].per_sample else []
    for j, w in enumerate(n.spec, start=len(key)):
        key.append(w if isinstance(w, int) else slice(w[0], a.shape[j] - w[1]))
    return np.asarray(a[tuple(key)], dtype=object).reshape(_one(n.shape))


def _pad(n, args, env) -> np.ndarray:
    out = np.empty(_one(n.shape), dtype=object)
    out[...] = sp.S.Zero
    key: list = [slice(None)] if n.per_sample else []
    for j, w in enumerate(n.spec, start=len(key)):
        key.append(w if isinstance(w, int) else slice(w[0], out.shape[j] - w[1]))
    out[tuple(key)] = args[0]
    return out


_RULES = {"leaf": _leaf, "map": _map, "contract": _contract, "reduce": _reduce,
          "window": _window, "pad": _pad}


def _each(a: np.ndarray, f) -> np.ndarray:
    out = np.empty(a.shape, dtype=object)
    for idx in np.ndindex(*a.shape):
        out[idx] = f(a[idx])
    return out


_INV = 1 / SAMPLES


def _means(e: sp.Expr) -> sp.Expr:
    """``Sum(u) / N`` written ``Mean(u)``; any other use of the number of samples ``N`` is the
    sum over samples of 1."""
    if not e.has(SAMPLES):
        return e

    def is_mean(m) -> bool:
        return m.is_Mul and _INV in m.args and any(isinstance(a, Sum) for a in m.args)

    def as_mean(m):
        args = list(m.args)
        args.remove(_INV)
        k = next(i for i, a in enumerate(args) if isinstance(a, Sum))
        args[k] = Mean(args[k].args[0])
        return sp.Mul(*args)

    e = e.replace(is_mean, as_mean)
    return e.xreplace({SAMPLES: Sum(sp.S.One)}) if e.has(SAMPLES) else e
