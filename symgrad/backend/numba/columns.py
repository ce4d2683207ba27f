"""Derivative matrices column by column: a model's Jacobian, an array loss's Hessian.

Column ``j`` of either is a tangent along the unit direction ``e_j``: of the model's output
(the Jacobian), of the loss's gradient (the Hessian). Computing each as a whole ``jvp`` or
``hvp`` would redo the forward (and reverse) work once per entry of ``x``. Here the tangents
are split by :func:`~symgrad.passes.hoist.hoist`: the body first computes everything that
does not depend on the direction (forward values, the gradient's reverse sweep, the tangents'
coefficients such as ``1 - tanh(z)**2``) once, then loops over the columns, each iteration
computing only the part of the tangents that is linear in the direction and storing it. The
tangents are seeded one parameter array at a time (one loop per array: each column computes
only what its array moves) unless that repeats too much code (:func:`seeded`), and a product
with the unit direction reads one entry instead of running a matrix product
(:class:`ColumnEmitter`).

>>> import symgrad as sg
>>> from symgrad.ir.model_problem import model_problem
>>> from symgrad.backend.numba.model_module import model_module_source
>>> W = sg.params("W", shape=(3, 2)); X = sg.data("X", shape=(2,))
>>> text = model_module_source(model_problem(sg.tanh(W @ X)))
>>> jac = text.split("def jacobian(")[1]
>>> jac.index("math.tanh") < jac.index("for jq in range(D0 * D1):")
True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ...ad.array import tangents, topo
from ...ad.derive import KinkPolicy
from ...ir.graph import Contract, Leaf, Map, Node, Reduce
from ...passes.hoist import hoist
from ...passes.reuse import reuse
from .emit import Emitter, plan

__all__ = ["ColumnEmitter", "column_loops", "flat_index", "moving", "seeded"]


#: The per-parameter loops are taken while their tangent code is at most this many times the
#: size of the one loop's (nodes that read a direction). Models of 8-wide tanh layers: 1.2x
#: for one layer, 1.9x for two (whose Jacobian then runs 1.25x faster than in one loop), 3.2x
#: for four, 5.9x for eight (compiled per parameter: 34 s, against 2.2 s for two layers);
#: their losses' Hessians: 2.2x for one layer, 3.4x for two.
PER_PARAM_MAX = 2.0


def seeded(outputs: Sequence[Node | None], params: Sequence[Leaf], seeds: Sequence[Leaf],
           policy: KinkPolicy) -> tuple[list[list[Node | None]], bool]:
    """The hoisted tangents of ``outputs`` and whether they go in one loop over x
    (``together``, :func:`column_loops`): per parameter along its seed alone, unless that
    code is more than :data:`PER_PARAM_MAX` times the size of the tangents along all seeds
    at once (deep models: a seed's tangent runs through every later layer)."""
    k = len(outputs)
    per = [tangents(outputs, {p: s}, policy) for p, s in zip(params, seeds, strict=True)]
    flat = hoist([t for ts in per for t in ts], seeds)
    one = hoist(tangents(outputs, dict(zip(params, seeds, strict=True)), policy), seeds)
    if _size(flat, seeds) <= PER_PARAM_MAX * _size(one, seeds):
        return [flat[j * k:(j + 1) * k] for j in range(len(per))], False
    return [one], True


def _size(outs: Sequence[Node | None], seeds: Sequence[Leaf]) -> int:
    """How many nodes of ``outs``' graphs read a direction (their code runs per column)."""
    order = topo([o for o in outs if o is not None])
    return len(moving(order, seeds)) - len(seeds)


def moving(order: list[Node], seeds: Sequence[Leaf]) -> set[int]:
    """The nodes that change with the direction: the seeds and what reads them."""
    found = {id(s) for s in seeds}
    for n in order:
        if any(id(a) in found for a in n.args):
            found.add(id(n))
    return found


def flat_index(fn: Emitter, shape: tuple, idx: Sequence[str]) -> str:
    """The C-order flat position of the element ``idx`` of an array of ``shape``."""
    if not shape:
        return "0"
    text = idx[0]
    for s, i in zip(shape[1:], idx[1:], strict=True):
        text = f"({text}) * {fn.size(s)} + {i}"
    return text


class ColumnEmitter(Emitter):
    """An emitter whose products with a unit direction are selections: ``W @ X`` along the
    direction of ``W[a, c]`` is ``X[:, c]`` in output ``a`` and zero elsewhere, so a column
    reads one entry instead of running a matrix product (registered in :attr:`unit`)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        #: id of a contraction with a seed -> its element formula at output indices
        self.unit: dict[int, Callable[[tuple], str]] = {}

    def elem(self, n: Node, idx: tuple) -> str:
        formula = self.unit.get(id(n))
        return formula(idx) if formula is not None else super().elem(n, idx)

    def node_contract(self, n: Contract, target) -> None:
        if id(n) in self.unit:
            self.fill(n, target)  # a buffer of the selection (read by another product)
        else:
            super().node_contract(n, target)


def _unit(fn: Emitter, n: Contract, seed: Leaf, u: Sequence[str], inside: str | None):
    """The element formula of the contraction ``n`` of ``seed`` (one-hot at the multi-index
    ``u``, or zero unless ``inside``) with its other operand."""
    (a, b), (la, lb, lo) = n.args, n.labels
    other, ls, lother = (b, la, lb) if a is seed else (a, lb, la)
    at = dict(zip(ls, u, strict=True))

    def formula(idx: tuple) -> str:
        pos = dict(zip(lo, idx, strict=True))
        cond = [f"{pos[c]} == {at[c]}" for c in ls if c in pos] + ([inside] if inside else [])
        src = fn.expr(other, tuple(pos[c] if c in pos else at[c] for c in lother))
        return f"({src} if {' and '.join(cond)} else {fn.zero})" if cond else src

    return formula


def _unravel(fn: Emitter, shape: tuple, name: str, flat: str) -> tuple[list[str], list[str]]:
    """Lines computing the multi-index of the flat position ``flat`` in ``shape``, and it."""
    if len(shape) == 1:
        return [], [flat]
    lines, u = [f"r_{name} = {flat}"], []
    for d in range(len(shape) - 1, 0, -1):
        lines += [f"u{d}_{name} = r_{name} % {fn.size(shape[d])}",
                  f"r_{name} = r_{name} // {fn.size(shape[d])}"]
        u.insert(0, f"u{d}_{name}")
    return lines, [f"r_{name}", *u]


def column_loops(fn: ColumnEmitter, params: Sequence[Leaf], seeds: Sequence[Leaf],
                 cols: Sequence[Sequence[Node | None]], names: Sequence[str],
                 offs: Sequence[str], store: Callable[[str, Sequence[Node | None]], None],
                 together: bool = False) -> list[str]:
    """The body after the prologue: the direction-free work once, then the columns, each
    with its unit direction in ``v_<name>``, ``store(j, tangents)`` emitting its stores into
    ``fn`` (``j``: the column's index expression; ``tangents``: None where zero).

    ``cols[k]`` are the hoisted tangents along parameter ``k`` alone, one loop per parameter
    array (``e_<name>`` its flat direction); ``together``: ``cols[0]`` are the tangents along
    every seed at once, one loop over x (``e`` the flat direction): one copy of the tangent
    code instead of one per parameter array, each column computing the parts of the other
    parameters too (with zero directions)."""
    width = len(cols[0]) if cols else 0
    tans = reuse([c for cs in cols for c in cs])  # forward maps read, not recomputed
    cols = [tans[j * width:(j + 1) * width] for j in range(len(cols))]
    outs = [c for c in tans if c is not None]
    order, virtual = plan(outs)
    virtual |= {id(c) for c in outs if isinstance(c, Map)}  # computed where they are stored
    swept = moving(order, seeds)
    uses: dict[int, list[Node]] = {}
    for n in order:
        for a in n.args:
            uses.setdefault(id(a), []).append(n)
        if id(n) in swept:  # what a column reads from the direction-free work: computed once
            virtual -= {id(a) for a in n.args if id(a) not in swept and isinstance(a, Map)}
    fn.body([n for n in order if id(n) not in swept], virtual, {})
    lines, units = fn.lines, []
    for k, (p, seed, name) in enumerate(zip(params, seeds, names, strict=True)):
        fn.name[id(seed)] = f"v_{name}"
        at, inside = (f"jq - {offs[k]}", f"{offs[k]} <= jq < {offs[k + 1]}") if together \
            else ("jq", None)
        found = [n for n in order if isinstance(n, Contract) and seed in n.args]
        if not found:
            units.append([])
            continue
        pre, u = _unravel(fn, p.shape, name, at)
        units.append(pre)
        for n in found:
            fn.unit[id(n)] = _unit(fn, n, seed, u, inside)
            use = uses.get(id(n), [])
            if n in outs or (len(use) == 1 and (isinstance(use[0], Map) or (isinstance(
                    use[0], Reduce) and use[0].op == "sum"))):
                virtual.add(id(n))
    if together:
        fn.lines = []
        fn.body([n for n in order if id(n) in swept], virtual, {})
        store("jq", cols[0])
        views, scalars = [], []
        for k, (p, name) in enumerate(zip(params, names, strict=True)):
            if p.shape:
                views.append(f"v_{name} = e[{offs[k]}:{offs[k + 1]}].reshape({fn.shape(p.shape)})")
            else:
                scalars.append(f"    v_{name} = e[{offs[k]}]")
        fn.lines = [*lines, "e = np.zeros(x.shape[0], dtype=x.dtype)", *views,
                    "for jq in range(x.shape[0]):", "    e[jq] = 1.0", *scalars,
                    *("    " + ln for pre in units for ln in pre),
                    *("    " + ln for ln in fn.lines), "    e[jq] = 0.0"]
        return fn.lines
    for k, (p, seed, cs, name) in enumerate(zip(params, seeds, cols, names, strict=True)):
        fn.lines = []
        live = any(c is not None for c in cs)
        if live:
            mine = moving(order, [seed])
            fn.body([n for n in order if id(n) in mine], virtual, {})
        store(f"{offs[k]} + jq", cs)
        body = ["    " + ln for ln in [*units[k], *fn.lines]]
        if not p.shape:  # a scalar parameter: its one direction is 1
            lines += [*([f"v_{name} = 1.0"] if live else []), "for jq in range(1):", *body]
        elif not live:  # nothing reads this parameter: zeros
            lines += [f"for jq in range({fn.prod(p.shape)}):", *body]
        else:
            lines += [f"e_{name} = np.zeros({fn.prod(p.shape)}, dtype=x.dtype)",
                      f"v_{name} = e_{name}.reshape({fn.shape(p.shape)})",
                      f"for jq in range({fn.prod(p.shape)}):", f"    e_{name}[jq] = 1.0",
                      *body, f"    e_{name}[jq] = 0.0"]
    fn.lines = lines
    return lines
