"""One generated function body: buffers, loops and BLAS calls for an array graph.

A node is either materialised (a buffer, a scalar, or a view of ``x``/``g``) or virtual: its
element at given indices is a formula that consumers compute in place. Element-wise maps used
once, windows (``u[1:, :]``), pads (their adjoints: ``g[i] = d[i - 1] if i >= 1 else 0``) and
gathers (``U[i[s], k]``) are virtual, so a chain of them becomes one loop in gather form: no
dense temporaries and no scattered writes. Contractions need contiguous operands (BLAS), so
their virtual arguments are materialised.
"""

from __future__ import annotations

import re

import sympy as sp

from ...ad.array import topo
from ...ir.array_problem import ArrayProblem
from ...ir.graph import (
    SAMPLES,
    Contract,
    Gather,
    Leaf,
    Map,
    N,
    Node,
    Pad,
    Reduce,
    Scatter,
    Window,
    map_,
    ph,
)
from .f32 import F32Printer
from .gemm import Contractions
from .nests import Nest, Nests
from .printer import ComplexPrinter, ScalarPrinter
from .reductions import Reductions

__all__ = ["Emitter", "plan"]

_SIMPLE = re.compile(r"[A-Za-z_]\w*(\[[^\[\]]*\])?")
_INDEX = re.compile(r"(i\d+)(?: ([+-]) (\d+))?")
_LOOPVAR = re.compile(r"for (i\d+) in (?:numba\.p)?range")
_LOAD1 = re.compile(r"\b([A-Za-z_]\w*)\[(i\d+)\]")


def shift(index: str, k: int) -> str:
    """``index + k`` for a loop index with an offset (``shift("i0 - 1", 1) == "i0"``)."""
    m = _INDEX.fullmatch(index)
    if m is None:
        return f"{index} + {k}" if k > 0 else f"{index} - {-k}"
    off = (int(m.group(3)) if m.group(2) == "+" else -int(m.group(3))) if m.group(2) else 0
    off += k
    return m.group(1) if off == 0 else f"{m.group(1)} {'+' if off > 0 else '-'} {abs(off)}"


class Emitter(Contractions, Nests, Reductions):
    """The statements of one function, node by node in topological order."""

    def __init__(self, prob: ArrayProblem, cplx: bool = False, real: str = "float64") -> None:
        self.prob = prob
        self.real = real
        self.lines: list = []  # and the nests waiting to be fused, while a body is written
        self.name: dict[int, str] = {}
        self.dim = {s.key: f"D{k}" for k, s in enumerate(prob.dims)}
        self.k = 0
        #: complex buffers and cmath for the complex-step variant of the value
        self.cplx = cplx
        self.dtype = (", dtype=np.complex128" if cplx else
                      ", dtype=np.float32" if real == "float32" else "")
        self.zero = "0j" if cplx else "np.float32(0.0)" if real == "float32" else "0.0"
        #: float32 kernels sum in float64 (a float32 accumulator over 1e7 samples loses 3 digits)
        self.wide = real == "float32" and not cplx
        self.acc0 = "0.0" if self.wide else self.zero
        self.lib = "cmath" if cplx else "math"
        self.acc = lambda: "acc"  # a scalar accumulator's name (unique ones in the variant)

    # -- helpers -----------------------------------------------------------------------------
    def size(self, s) -> str:
        if s == N:
            return "n"
        name = self.dim[(s.owner, s.axis, 0)]
        return f"({name} - {s.trim})" if s.trim else name

    def shape(self, shape: tuple) -> str:
        return "(" + "".join(f"{self.size(s)}, " for s in shape) + ")"

    def new(self) -> str:
        self.k += 1
        return f"t{self.k}"

    def prod(self, sizes) -> str:
        return " * ".join(self.size(s) for s in sizes) or "1"

    def loops(self, shape: tuple, depth: int = 0, axes: tuple | None = None,
              first: str | None = None) -> tuple[list, int]:
        """A loop nest over ``shape``; ``first`` replaces the outer loop's ``range(size)``."""
        axes = tuple(range(len(shape))) if axes is None else axes
        out = []
        for d, (a, s) in enumerate(zip(axes, shape, strict=True)):
            rng = first if d == 0 and first else f"range({self.size(s)})"
            out.append("    " * (depth + d) + f"for i{a} in {rng}:")
        return out, depth + len(shape)

    def top(self, shape: tuple, axes: tuple | None = None) -> tuple[list, int]:
        """A loop nest writing disjoint elements (the parallel variant's outer loop: prange)."""
        return self.loops(shape, 0, axes)

    def emit(self, text: str, depth: int = 0) -> None:
        self.lines.append("    " * depth + text)

    def nest(self, loops: list[str], stmts: list[str], depth: int) -> None:
        """A loop nest with its innermost statements; reads ``a[i0]`` of the outer index are
        loaded once per outer iteration (the writes into other arrays would otherwise make
        LLVM reload them in the inner loop, as it cannot rule out aliasing)."""
        self.lines.extend(loops)
        if len(loops) >= 2:
            outer = _LOOPVAR.match(loops[0].strip()).group(1)
            written = {t.split("[")[0].strip() for t in stmts}
            hoisted: dict[str, str] = {}

            def local(m: re.Match) -> str:
                if m.group(1) in written or m.group(2) != outer:
                    return m.group(0)
                return hoisted.setdefault(m.group(0), f"{m.group(1)}_{outer}")

            stmts = [_LOAD1.sub(local, t) for t in stmts]
            pad = "    " * (loops[0].count("    ") + 1)
            at = len(self.lines) - len(loops) + 1
            self.lines[at:at] = [f"{pad}{name} = {load}" for load, name in hoisted.items()]
        for t in stmts:
            self.emit(t, depth)

    @staticmethod
    def idx(axes) -> tuple[str, ...]:
        return tuple(f"i{a}" for a in axes)

    # -- elements ------------------------------------------------------------------------------
    def expr(self, node: Node, idx: tuple) -> str:
        """The element of ``node`` at the index expressions ``idx``: a load when the node is
        materialised, else its formula (virtual nodes are computed where they are read)."""
        name = self.name.get(id(node))
        if name is not None:
            return f"{name}[{', '.join(idx)}]" if idx else name
        return self.elem(node, idx)

    def elem(self, n: Node, idx: tuple) -> str:
        """The formula of one element of ``n``."""
        if isinstance(n, Map):
            names = {SAMPLES: "nf"}
            for k, (a, axes) in enumerate(zip(n.args, n.axes, strict=True)):
                t = self.expr(a, tuple(idx[j] for j in axes))
                names[ph(k)] = t if _SIMPLE.fullmatch(t) else f"({t})"
            printer = (ComplexPrinter if self.cplx else F32Printer if self.real == "float32"
                       else ScalarPrinter)(names)
            return printer.doprint(n.expr)
        if isinstance(n, Window):
            (a,) = n.args
            lead = 1 if a.per_sample else 0
            src, j = list(idx[:lead]), lead
            for w in n.spec:
                if isinstance(w, int):
                    src.append(str(w))
                else:
                    src.append(shift(idx[j], w[0]))
                    j += 1
            return self.expr(a, tuple(src))
        if isinstance(n, Pad):
            (a,) = n.args
            lead = 1 if n.per_sample else 0
            src, cond = list(idx[:lead]), []
            for j, w in enumerate(n.spec, start=lead):
                size = self.size(n.shape[j])
                if isinstance(w, int):
                    cond.append(f"{idx[j]} == {w}")
                    continue
                start, end = w
                src.append(shift(idx[j], -start))
                if start:
                    cond.append(f"{idx[j]} >= {start}")
                if end:
                    cond.append(f"{idx[j]} < {size} - {end}")
            inner = self.expr(a, tuple(src))
            return f"({inner} if {' and '.join(cond)} else {self.zero})" if cond else inner
        if isinstance(n, Gather):
            src, rows = n.args
            return self.expr(src, (self.expr(rows, idx[:1]), *idx[1:]))
        raise AssertionError(f"{type(n).__name__} is always materialised")

    # -- materialised nodes ----------------------------------------------------------------------
    def body(self, order: list[Node], virtual: set[int], buffers: dict[int, str]) -> None:
        """Every materialised node in order; ``buffers`` are the outputs' target views.

        An output that sums scatters (the gradient of a gathered parameter: ``dU = 0.02*U +
        scatter_add(...)``) is written in place: its other terms first, then every such
        scatter adds into it, the scatters over one domain sharing one loop at the end.
        """
        start, self.fusing = len(self.lines), True
        absorbed = _absorbed(order, buffers)
        skip = {id(sc) for _, scs in absorbed.values() for sc in scs}
        deferred: list[tuple[str, Scatter]] = []
        for n in order:
            if id(n) in virtual or id(n) in self.name or id(n) in skip:
                continue
            if id(n) in absorbed:
                rest, scs = absorbed[id(n)]
                name = self.alloc(n, buffers[id(n)], zero=rest is None)
                if rest is not None:
                    self.store(rest, name)
                self.name[id(n)] = name
                deferred.extend((name, sc) for sc in scs)
                continue
            emit = getattr(self, f"node_{n.kind}", self.fill)
            emit(n, buffers.get(id(n)))
        for group in _by_domain(deferred):
            self.scatter_loop(group)
        self.fuse_from(start)

    def alloc(self, n: Node, target: str | None, zero: bool = False) -> str:
        name = self.new()
        if n.ndim:
            self.emit(f"{name} = {target}" if target is not None else
                      f"{name} = np.empty({self.shape(n.shape)}{self.dtype})")
            if zero:
                self.set_all(name, n.shape, self.zero)
        return name

    def set_all(self, name: str, shape: tuple, value: str) -> None:
        """``name[...] = value`` as a loop nest: ``np.zeros``, ``np.full`` and an ellipsis
        store each cost a Numba compile of their own (about 0.1 s a form, cold)."""
        self.add(Nest(shape, [f"{name}[{', '.join(self.idx(range(len(shape))))}] = {value}"]))

    def fill(self, n: Node, target) -> None:
        """A buffer (or scalar) holding every element of a Map, Window, Pad or Gather."""
        name = self.alloc(n, target)
        if n.ndim == 0:
            self.emit(f"{name} = {self.elem(n, ())}")
        else:
            self.store(n, name, formula=True)
        self.name[id(n)] = name

    def store(self, n: Node, name: str, formula: bool = False) -> None:
        """``name[i...] = n[i...]`` over n's shape (its formula, or a load when materialised)."""
        idx = self.idx(range(n.ndim))
        value = self.elem(n, idx) if formula else self.expr(n, idx)
        self.add(Nest(n.shape, [f"{name}[{', '.join(idx)}] = {value}"]))

    def node_leaf(self, n: Leaf, target) -> None:
        raise AssertionError(f"leaf {n!r} is loaded up front")

    def node_scatter(self, n: Scatter, target) -> None:
        """Rows added into a zeroed buffer, one sample after another (serial: no races)."""
        name = self.alloc(n, target, zero=True)
        self.scatter_loop([(name, n)])
        self.name[id(n)] = name

    def scatter_loop(self, group: list[tuple[str, Scatter]]) -> None:
        """One loop over the samples (and the row axes) adding every scatter of ``group``
        (float32 kernels: into float64 buffers, each target rounded once at the end)."""
        arg = group[0][1].args[0]
        idx = self.idx(range(arg.ndim))
        accs = [self.wide_buffer(sc.shape) if self.wide else name for name, sc in group]
        loops, d = self.loops(arg.shape)
        self.nest(loops, [f"{acc}[{', '.join((self.expr(sc.args[1], idx[:1]), *idx[1:]))}] "
                          f"+= {self.expr(sc.args[0], idx)}"
                          for acc, (_, sc) in zip(accs, group, strict=True)], d)
        if self.wide:
            for acc, (name, sc) in zip(accs, group, strict=True):
                at = ", ".join(self.idx(range(sc.ndim)))
                loops, d = self.loops(sc.shape)
                self.lines.extend(loops)
                self.emit(f"{name}[{at}] = np.float32({name}[{at}] + {acc}[{at}])", d)

def _absorbed(order: list[Node], buffers: dict[int, str]) -> dict[int, tuple]:
    """Outputs ``a + b + scatter(...)`` whose scatters feed nothing else: ``id -> (rest of the
    sum or None, [scatters])``."""
    consumers: dict[int, int] = {}
    for n in order:
        for a in n.args:
            consumers[id(a)] = consumers.get(id(a), 0) + 1
    out = {}
    for n in order:
        if id(n) not in buffers or consumers.get(id(n)) or not isinstance(n, Map):
            continue
        terms = sp.Add.make_args(n.expr)
        full = tuple(range(n.ndim))
        scs = [k for k, (a, ax) in enumerate(zip(n.args, n.axes, strict=True))
               if isinstance(a, Scatter) and consumers[id(a)] == 1 and ax == full
               and ph(k) in terms and sum(t.has(ph(k)) for t in terms) == 1]
        if not scs:
            continue
        rest = n.expr.xreplace({ph(k): 0 for k in scs})
        node = (map_(rest, list(zip(n.args, n.axes, strict=True)), n.shape) if rest != 0
                else None)
        out[id(n)] = (node, [n.args[k] for k in scs])
    return out


def _by_domain(items: list[tuple[str, Scatter]]) -> list[list[tuple[str, Scatter]]]:
    groups: dict[tuple, list] = {}
    for name, sc in items:
        key = tuple("N" if s == N else s.key for s in sc.args[0].shape)
        groups.setdefault(key, []).append((name, sc))
    return list(groups.values())


def plan(outputs: list[Node]) -> tuple[list[Node], set[int]]:
    """Topological order and the virtual nodes (computed where they are read).

    Windows and gathers are virtual unless a contraction needs them contiguous; maps and pads
    read by exactly one element-wise consumer (a map, a sum, a window, a pad, a gather or a
    scatter) are virtual too. Outputs and scalars are always materialised.
    """
    order = topo(outputs)
    uses: dict[int, list[Node]] = {}
    for n in order:
        for a in n.args:
            uses.setdefault(id(a), []).append(n)
    outs = {id(o) for o in outputs}
    virtual = set()
    for n in order:
        u = uses.get(id(n), [])
        if id(n) in outs or n.ndim == 0 or isinstance(n, Leaf | Reduce | Contract | Scatter):
            continue
        if isinstance(n, Window | Gather):
            if not any(isinstance(c, Contract) for c in u):
                virtual.add(id(n))
        elif len(u) == 1 and (isinstance(u[0], Map | Window | Pad | Gather | Scatter)
                              or (isinstance(u[0], Reduce) and u[0].op == "sum")):
            virtual.add(id(n))
    return order, virtual
