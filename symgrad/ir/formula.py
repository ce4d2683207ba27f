"""Array graphs as readable straight-line formulas (no sizes): ``t2 = relu(t1 + b1)``.

Every node used more than once, and every contraction or reduction, gets a name; element-wise
maps are printed inline with SymPy's printer, so the gradient of a dense layer reads
``dW1 = einsum('#h,#d->hd', t5, X)``: the adjoint of the pre-activation against the inputs, one
GEMM over the sample axis ``#``.

>>> import symgrad as sg
>>> W = sg.params("W", shape=(3, 2)); X = sg.data("X", shape=(2,))
>>> print(program({"loss": sg.mean(sg.sum(sg.tanh(W @ X), axis=0))}))
t1 = einsum('ik,#k->#i', W, X)
loss = sum(sum(tanh(t1), axis=0), axis=samples)/N
"""

from __future__ import annotations

import sympy as sp

from ..ad.array import topo
from .graph import (
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
    _spec_str,
    ph,
)

__all__ = ["program"]


def program(outputs: dict[str, Node | None]) -> str:
    """Assignments computing each named output from the parameters and data, in order."""
    nodes = [n for n in outputs.values() if n is not None]
    order = topo(nodes)
    uses: dict[int, int] = {}
    for n in order:
        for a in n.args:
            uses[id(a)] = uses.get(id(a), 0) + 1
    named = {id(n): k for k, n in outputs.items() if n is not None}
    text: dict[int, str] = {}
    lines: list[str] = []
    count = 0
    for n in order:
        t = _text(n, text)
        if isinstance(n, Leaf):
            text[id(n)] = n.name if n.role != "tangent" else f"v_{n.name}"
            continue
        if id(n) in named or isinstance(n, Contract) or uses.get(id(n), 0) > 1:
            if id(n) in named:
                name = named[id(n)]
            else:
                count += 1
                name = f"t{count}"
            lines.append(f"{name} = {t}")
            text[id(n)] = name
        else:
            simple = isinstance(n, Map) and (n.expr.is_Atom or n.expr.is_Function)
            text[id(n)] = f"({t})" if isinstance(n, Map) and not simple else t
    for k, n in outputs.items():
        if n is None:
            lines.append(f"{k} = 0")
        elif named.get(id(n)) != k:
            lines.append(f"{k} = {text[id(n)]}")
    return "\n".join(lines)


def _text(n: Node, text: dict) -> str:
    if isinstance(n, Leaf):
        return n.name
    args = [text[id(a)] for a in n.args]
    if isinstance(n, Map):
        names = {SAMPLES: sp.Symbol("N")}
        for k, axes in enumerate(n.axes):
            s = args[k]
            if list(axes) != sorted(axes):
                s = f"transpose({s}, {tuple(sorted(range(len(axes)), key=lambda j: axes[j]))})"
            names[ph(k)] = sp.Symbol(s)
        return sp.sstr(n.expr.xreplace(names))
    if isinstance(n, Contract):
        la, lb, lo = n.labels
        return f"einsum('{la},{lb}->{lo}', {args[0]}, {args[1]})"
    if isinstance(n, Reduce):
        # axes as the user counts them: per sample (the sample axis is named, not numbered)
        lead = 1 if n.args[0].per_sample else 0
        axes = tuple("samples" if k < lead else str(k - lead)
                     for k in range(n.args[0].ndim) if k not in n.keep)
        op = {"sum": "sum", "max": "max", "lse": "logsumexp"}[n.op]
        ax = axes[0] if len(axes) == 1 else f"({', '.join(axes)})"
        return f"{op}({args[0]}, axis={ax})"
    if isinstance(n, Window):
        lead = ":, " if n.args[0].per_sample else ""
        return f"{args[0]}[{lead}{_spec_str(n.spec)}]"
    if isinstance(n, Pad):
        return f"pad({args[0]}, at=[{_spec_str(n.spec)}])"
    if isinstance(n, Gather):
        return f"{args[0]}[{args[1]}]"
    if isinstance(n, Scatter):
        return f"scatter_add({args[0]}, rows={args[1]})"
    raise TypeError(type(n).__name__)
