"""Read a computed map instead of evaluating its formula again inside another map.

Reverse mode writes a map's adjoint in terms of the map's inputs: the gradient of ``tanh(z)``
reads ``1 - tanh(z)**2``, so a tanh layer's gradient evaluated ``tanh`` a second time per
element, though the forward pass had stored ``tanh(z)`` (the product with the next layer needs
it). :func:`reuse` rewrites every map whose formula contains the whole formula of another map
of the same graph, over the same index space and arguments, to read that map instead: one
``tanh`` per element, not two. Only formulas that call a function (``tanh``, ``exp``, a kink)
or take a non-integer power are reused; plain arithmetic is as cheap to redo as to load.

>>> import symgrad as sg
>>> from symgrad.ad.array import gradients
>>> W = sg.params("W", shape=(4, 3)); X = sg.data("X", shape=(3,))
>>> h = sg.tanh(W @ X)
>>> (g,) = gradients(sg.mean(sg.sum(h, axis=0)), [W])
>>> g.args[0]  # dW = this (N, 4) map times X, contracted over the samples
map((1 - tanh(_a0)**2)/_N; einsum('ik,#k->#i', W[4, 3], X[N, 3]))
>>> reuse([h, g])[1].args[0]
map((1 - _a0**2)/_N; map(tanh(_a0); einsum('ik,#k->#i', W[4, 3], X[N, 3])))
"""

from __future__ import annotations

from collections.abc import Sequence

import sympy as sp

from ..ad.array import topo
from ..ir.graph import Map, Node, map_, ph
from .hoist import costly, rebuild

__all__ = ["reuse"]


def _match(n: Map, maps: Sequence[Map]) -> tuple[sp.Expr, dict[sp.Symbol, Map]]:
    """n's formula with each map of ``maps`` (same shape, arguments among n's) whose whole
    formula occurs in it replaced by a symbol (biggest first), and those symbols."""
    slot = {(id(a), ax): ph(k) for k, (a, ax) in enumerate(zip(n.args, n.axes, strict=True))}
    expr, reads = n.expr, {}
    for m in sorted(maps, key=lambda m: -sp.count_ops(m.expr)):
        if m.shape != n.shape:
            continue
        ks = [slot.get((id(a), ax)) for a, ax in zip(m.args, m.axes, strict=True)]
        if None in ks:
            continue
        pattern = m.expr.xreplace(dict(zip(map(ph, range(len(ks))), ks, strict=True)))
        if pattern != expr and expr.has(pattern):
            s = sp.Symbol(f"_r{len(reads)}", real=True)
            expr, reads[s] = expr.xreplace({pattern: s}), m
    return expr, reads


def _assemble(expr: sp.Expr, n: Map, reads: dict[sp.Symbol, Node]) -> Node:
    """A map of n's index space: ``expr`` over n's arguments (``ph(k)``) and the read maps."""
    every = list(zip(n.args, n.axes, strict=True))
    ident = tuple(range(len(n.shape)))
    expr = expr.xreplace({s: ph(len(every) + j) for j, s in enumerate(reads)})
    return map_(expr, every + [(m, ident) for m in reads.values()], n.shape, inline=False)


def reuse(outputs: Sequence[Node | None]) -> list[Node | None]:
    """The graphs of ``outputs`` with maps reading the costly maps they recompute (any map
    of the graph that does not depend on the reader)."""
    order = topo([o for o in outputs if o is not None])
    deps: dict[int, set[int]] = {}
    for n in order:
        deps[id(n)] = set().union(*(deps[id(a)] | {id(a)} for a in n.args))
    maps = [n for n in order if isinstance(n, Map) and costly(n.expr)]
    found = {}
    for n in maps:
        expr, reads = _match(n, [m for m in maps if m is not n and id(n) not in deps[id(m)]])
        if reads:
            found[id(n)] = (expr, reads)
    new: dict[int, Node] = {}
    stack = [(n, False) for n in reversed(order)]
    while stack:  # rebuilt after its arguments and the maps it reads
        n, ready = stack.pop()
        if id(n) in new:
            continue
        reads = found.get(id(n), (None, {}))[1]
        if not ready:
            stack.append((n, True))
            stack.extend((a, False) for a in (*n.args, *reads.values()) if id(a) not in new)
            continue
        m = rebuild(n, [new[id(a)] for a in n.args])
        if reads:
            m = _assemble(found[id(n)][0], m, {s: new[id(r)] for s, r in reads.items()})
        new[id(n)] = m
    return [None if o is None else new[id(o)] for o in outputs]
