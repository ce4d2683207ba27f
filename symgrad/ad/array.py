"""Exact derivatives of array graphs, as array graphs: reverse mode and tangents.

The rules are data: one adjoint (``_VJP``) and one tangent (``_JVP``) per node kind. The adjoint
of a contraction is a contraction of the output's adjoint with the other operand (the weight
gradient of a dense layer is one GEMM over the sample axis); the adjoint of a Map multiplies by
its partial derivatives, all from one :class:`~symgrad.ad.derive.Builder` program of its formula
(the scalar losses' differentiator: shared subexpressions, kinks resolved by the
:class:`KinkPolicy`); the adjoint of a broadcast argument is summed over the axes it was
broadcast along. Hessian-vector products are tangents (forward mode) of the whole
forward-and-reverse graph.

>>> import symgrad as sg
>>> from symgrad.ir.graph import Leaf
>>> w = sg.params("w", shape=(3,))
>>> loss = sg.sum(sg.exp(w))
>>> (gw,) = gradients(loss, [Leaf("param", "w", (3,))])
>>> gw
map(exp(_a0); w[3])
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import sympy as sp

from ..ir.graph import (
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
    ph,
    reduce_,
)
from ..lang.windows import gather, pad, scatter
from .derive import Builder, KinkPolicy

__all__ = ["gradients", "tangents", "topo", "vjp"]


def topo(outputs: Sequence[Node]) -> list[Node]:
    """Every node the outputs depend on, arguments before their consumers."""
    seen: set[int] = set()
    order: list[Node] = []
    stack = [(n, False) for n in reversed(outputs) if n is not None]
    while stack:
        n, done = stack.pop()
        if done:
            order.append(n)
            continue
        if id(n) in seen:
            continue
        seen.add(id(n))
        stack.append((n, True))
        stack.extend((a, False) for a in reversed(n.args) if id(a) not in seen)
    return order


@functools.lru_cache(maxsize=4096)
def _forward(expr: sp.Expr, k: int, policy: KinkPolicy) -> sp.Expr:
    """d expr / d ph(k) by one forward sweep of a :class:`Builder` program seeded with 1."""
    b = Builder(policy)
    (t,) = b.tangent([b.node(expr)], {ph(k): sp.S.One})
    return b.expand(t)


@functools.lru_cache(maxsize=4096)
def _partials(expr: sp.Expr, nargs: int, policy: KinkPolicy) -> tuple[sp.Expr, ...]:
    """d expr / d ph(k) for every argument k: ONE reverse sweep of a :class:`Builder` program
    (kinks through ``local_derivative``, as for scalar losses), expanded back to SymPy
    expressions in the placeholders (the emitter prints a Map's formula). A one-argument map
    takes the forward sweep: it keeps the chain rule factored where an argument fans out
    (``exp(sin(x)*cos(x))``), where the expanded reverse sweep repeats the shared prefix."""
    if nargs == 1:
        return (_forward(expr, 0, policy),)
    b = Builder(policy)
    out = b.node(expr)
    return tuple(b.expand(g) for g in b.gradient(out, [ph(k) for k in range(nargs)]))


@functools.lru_cache(maxsize=4096)
def _tangent(expr: sp.Expr, nargs: int, active: tuple[int, ...], policy: KinkPolicy) -> sp.Expr:
    """The tangent of ``expr`` along ``ph(nargs + j)``, the seed of its active argument
    ``ph(active[j])``: one forward sweep of a :class:`Builder` program (with a single active
    argument its derivative times the seed, so the seed is not distributed over the terms)."""
    if len(active) == 1:
        return _forward(expr, active[0], policy) * ph(nargs)
    b = Builder(policy)
    (t,) = b.tangent([b.node(expr)], {ph(k): ph(nargs + j) for j, k in enumerate(active)})
    return b.expand(t)


def _all(n: Node) -> tuple:
    return tuple(range(n.ndim))


def add(a: Node | None, b: Node | None) -> Node | None:
    """The sum of two arrays of one shape (``None`` is zero)."""
    if a is None or b is None:
        return b if a is None else a
    return map_(ph(0) + ph(1), [(a, _all(a)), (b, _all(b))], a.shape)


def _to_arg(d: Node, axes: tuple, arg: Node) -> Node:
    """``d`` (shaped like a Map's output) summed over the axes ``arg`` was broadcast along."""
    if len(axes) == d.ndim and sorted(axes) == list(axes):
        return d
    return reduce_("sum", d, axes)


def _max_weights(z: Node, m: Node, keep: tuple) -> tuple[Node, Node]:
    """Where ``z`` attains its max ``m`` (1 or 0) and how often: ties share the derivative."""
    ind = map_(sp.Piecewise((1, sp.Eq(ph(0), ph(1))), (0, True)),
               [(z, _all(z)), (m, keep)], z.shape)
    return ind, reduce_("sum", ind, keep)


# -- reverse mode --------------------------------------------------------------------------------

def _vjp_map(n: Map, adj: Node, policy: KinkPolicy) -> list[Node]:
    out = []
    shift = {ph(j): ph(j + 1) for j in range(len(n.args))}
    for d, a, axes in zip(_partials(n.expr, len(n.args), policy), n.args, n.axes, strict=True):
        if d == 0:
            out.append(None)
            continue
        term = map_(ph(0) * d.xreplace(shift), [(adj, _all(adj)), *zip(n.args, n.axes,
                                                                       strict=True)], n.shape)
        out.append(_to_arg(term, axes, a))
    return out


def _vjp_contract(n: Contract, adj: Node, policy) -> list[Node]:
    (a, b), (la, lb, lo) = n.args, n.labels
    return [contract(adj, b, lo, lb, la), contract(a, adj, la, lo, lb)]


def _vjp_reduce(n: Reduce, adj: Node, policy) -> list[Node]:
    (z,) = n.args
    if n.op == "sum":
        return [map_(ph(0), [(adj, n.keep)], z.shape)]
    if n.op == "lse":
        return [map_(ph(0) * sp.exp(ph(1) - ph(2)), [(adj, n.keep), (z, _all(z)), (n, n.keep)],
                     z.shape)]
    ind, cnt = _max_weights(z, n, n.keep)
    return [map_(ph(0) * ph(1) / ph(2), [(adj, n.keep), (ind, _all(z)), (cnt, n.keep)], z.shape)]


def _vjp_window(n: Window, adj: Node, policy) -> list[Node]:
    return [pad(adj, n.spec, n.args[0].shape)]


def _vjp_pad(n: Pad, adj: Node, policy) -> list[Node]:
    return [Window(adj, n.spec, n.args[0].shape)]


def _vjp_gather(n: Gather, adj: Node, policy) -> list[Node | None]:
    src, idx = n.args
    return [scatter(adj, idx, src.shape), None]


def _vjp_scatter(n: Scatter, adj: Node, policy) -> list[Node | None]:
    return [gather(adj, n.args[1]), None]


_VJP = {Map: _vjp_map, Contract: _vjp_contract, Reduce: _vjp_reduce, Window: _vjp_window,
        Pad: _vjp_pad, Gather: _vjp_gather, Scatter: _vjp_scatter}


def gradients(loss: Node, wrt: Sequence[Leaf], policy: KinkPolicy | None = None
              ) -> list[Node | None]:
    """The adjoint of each leaf in ``wrt`` (``None`` where the loss does not depend on it)."""
    if loss.shape != ():
        raise ValueError(f"the loss must be a scalar, got shape {loss.shape}")
    return vjp([loss], [map_(sp.S.One, [], ())], wrt, policy)


def vjp(outputs: Sequence[Node], cotangents: Sequence[Node], wrt: Sequence[Leaf],
        policy: KinkPolicy | None = None) -> list[Node | None]:
    """The adjoint of each leaf in ``wrt`` of ``sum(output * cotangent)`` over the outputs,
    each cotangent of its output's shape: reverse mode from those adjoints (a per-sample leaf's
    adjoint keeps its sample axis: each sample's row by its own outputs)."""
    policy = policy or KinkPolicy()
    adj: dict[int, Node] = {}
    for o, c in zip(outputs, cotangents, strict=True):
        adj[id(o)] = add(adj.get(id(o)), c)
    for n in reversed(topo(list(outputs))):
        a = adj.get(id(n))
        if a is None or isinstance(n, Leaf):
            continue
        for arg, d in zip(n.args, _VJP[type(n)](n, a, policy), strict=True):
            if d is not None:
                adj[id(arg)] = add(adj.get(id(arg)), d)
    return [adj.get(id(w)) for w in wrt]


# -- tangents (forward mode) --------------------------------------------------------------------

def _jvp_map(n: Map, ts: list, policy) -> Node | None:
    active = tuple(k for k, t in enumerate(ts) if t is not None)
    d = _tangent(n.expr, len(n.args), active, policy)
    if d == 0:
        return None
    extra = [(ts[k], n.axes[k]) for k in active]
    return map_(d, [*zip(n.args, n.axes, strict=True), *extra], n.shape)


def _jvp_contract(n: Contract, ts: list, policy) -> Node | None:
    (a, b), (la, lb, lo) = n.args, n.labels
    ta, tb = ts
    return add(None if ta is None else contract(ta, b, la, lb, lo),
               None if tb is None else contract(a, tb, la, lb, lo))


def _jvp_reduce(n: Reduce, ts: list, policy) -> Node | None:
    ((z,), (t,)) = n.args, ts
    if t is None:
        return None
    if n.op == "sum":
        return reduce_("sum", t, n.keep)
    if n.op == "lse":
        w = map_(sp.exp(ph(0) - ph(1)) * ph(2), [(z, _all(z)), (n, n.keep), (t, _all(t))],
                 z.shape)
        return reduce_("sum", w, n.keep)
    ind, cnt = _max_weights(z, n, n.keep)
    w = map_(ph(0) * ph(1) / ph(2), [(t, _all(t)), (ind, _all(z)), (cnt, n.keep)], z.shape)
    return reduce_("sum", w, n.keep)


def _jvp_window(n: Window, ts: list, policy) -> Node | None:
    return None if ts[0] is None else Window(ts[0], n.spec, n.shape)


def _jvp_pad(n: Pad, ts: list, policy) -> Node | None:
    return None if ts[0] is None else pad(ts[0], n.spec, n.shape)


def _jvp_gather(n: Gather, ts: list, policy) -> Node | None:
    return None if ts[0] is None else gather(ts[0], n.args[1])


def _jvp_scatter(n: Scatter, ts: list, policy) -> Node | None:
    return None if ts[0] is None else scatter(ts[0], n.args[1], n.shape)


_JVP = {Map: _jvp_map, Contract: _jvp_contract, Reduce: _jvp_reduce, Window: _jvp_window,
        Pad: _jvp_pad, Gather: _jvp_gather, Scatter: _jvp_scatter}


def tangents(outputs: Sequence[Node | None], seeds: dict[Leaf, Node],
             policy: KinkPolicy | None = None) -> list[Node | None]:
    """The directional derivative of each output along ``seeds`` (leaf -> its tangent)."""
    policy = policy or KinkPolicy()
    tan: dict[int, Node | None] = {id(k): v for k, v in seeds.items()}
    for n in topo([o for o in outputs if o is not None]):
        if isinstance(n, Leaf):
            continue
        ts = [tan.get(id(a)) for a in n.args]
        tan[id(n)] = None if all(t is None for t in ts) else _JVP[type(n)](n, ts, policy)
    return [None if o is None else tan.get(id(o)) for o in outputs]
