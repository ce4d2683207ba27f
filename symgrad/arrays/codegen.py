"""Array derivatives -> module text: BLAS calls for contractions, fused loops for the rest.

Every node that must exist as an array gets one buffer; element-wise Maps feeding a single sum
are computed inside that sum's loop (fused); contractions that fit a matrix product print as
``np.dot`` on contiguous 2-D views (SciPy's BLAS inside Numba), other contractions as loops.
Sizes are read from the ``dims`` argument, so one module serves every size.

>>> import symgrad as sg
>>> from symgrad.arrays.problem import array_problem
>>> w = sg.params("w", shape=(3,)); X = sg.data("X", shape=(3,))
>>> text = array_module_source(array_problem(sg.mean((X @ w)**2)))
>>> "np.dot(" in text and "def value_and_grad(x, g, dims, c_X, idx):" in text
True
"""

from __future__ import annotations

import hashlib
import re

from ..codegen import COMPLEX_HELPERS, HELPERS, CodegenOptions, _esc
from ..derive import KinkPolicy
from ..printer import ComplexPrinter, ScalarPrinter
from .autodiff import gradients, tangents, topo
from .formula import program
from .graph import SAMPLES, Contract, Element, Leaf, Map, N, Node, Place, Reduce, ph
from .problem import ArrayProblem

__all__ = ["array_module_source"]

_JIT = "@numba.njit(cache=True, fastmath=_FASTMATH, error_model='numpy')"


def _ident(name: str, prefix: str) -> str:
    return prefix + re.sub(r"[^0-9A-Za-z_]", "_", name)


class F32Printer(ScalarPrinter):
    """Scalar code that stays in float32: literals are float32 and so are helper results
    (Numba's ``math`` functions keep float32; a Python float literal would promote)."""

    def _f32(self, text: str) -> str:
        return f"np.float32({text})"

    def _print_Float(self, e):
        return self._f32(super()._print_Float(e))

    _print_Integer = _print_Rational = _print_Float
    _print_Pi = _print_Exp1 = _print_Float

    def _print_Zero(self, e):
        return self._f32("0.0")

    def _print_One(self, e):
        return self._f32("1.0")

    def _print_NegativeOne(self, e):
        return self._f32("-1.0")

    def _print_Half(self, e):
        return self._f32("0.5")

    def _print_Pow(self, e, rational=False):
        text = super()._print_Pow(e, rational)
        return text.replace("(1.0/", "(np.float32(1.0)/")



def _f32_helpers(text: str) -> str:
    """The kink helpers with float32 literals, so that they return float32 for float32."""
    return re.sub(r"(?<![\w.])(\d+\.\d+)", r"np.float32(\1)", text)


class _Fn:
    """The body of one generated function: buffers, loops and BLAS calls in topological order."""

    def __init__(self, prob: ArrayProblem, cplx: bool = False, real: str = "float64") -> None:
        self.prob = prob
        self.real = real
        self.lines: list[str] = []
        self.name: dict[int, str] = {}
        self.dim = {s.key: f"D{k}" for k, s in enumerate(prob.dims)}
        self.k = 0
        #: complex buffers and cmath for the complex-step variant of the value
        self.cplx = cplx
        self.dtype = (", dtype=np.complex128" if cplx else
                      ", dtype=np.float32" if real == "float32" else "")
        self.zero = "0j" if cplx else "np.float32(0.0)" if real == "float32" else "0.0"
        self.lib = "cmath" if cplx else "math"

    # -- helpers -----------------------------------------------------------------------------
    def size(self, s) -> str:
        return "n" if s == N else self.dim[s.key]

    def shape(self, shape: tuple) -> str:
        return "(" + "".join(f"{self.size(s)}, " for s in shape) + ")"

    def new(self) -> str:
        self.k += 1
        return f"t{self.k}"

    def load(self, node: Node, axes: tuple) -> str:
        """The element of ``node`` at the loop indices of the given output axes."""
        name = self.name[id(node)]
        if node.ndim == 0:
            return name
        return f"{name}[{', '.join(f'i{a}' for a in axes)}]"

    def printer(self, node: Map) -> ScalarPrinter:
        names = {SAMPLES: "nf"}
        for k, (a, axes) in enumerate(zip(node.args, node.axes, strict=True)):
            names[ph(k)] = self.load(a, axes)
        return (ComplexPrinter if self.cplx else F32Printer if self.real == "float32"
                else ScalarPrinter)(names)

    def loops(self, shape: tuple, depth: int = 0, axes: tuple | None = None) -> tuple[list, int]:
        axes = tuple(range(len(shape))) if axes is None else axes
        out = []
        for d, (a, s) in enumerate(zip(axes, shape, strict=True)):
            out.append("    " * (depth + d) + f"for i{a} in range({self.size(s)}):")
        return out, depth + len(shape)

    def emit(self, text: str, depth: int = 0) -> None:
        self.lines.append("    " * depth + text)

    # -- nodes -------------------------------------------------------------------------------
    def body(self, order: list[Node], fused: set[int], buffers: dict[int, str]) -> None:
        for n in order:
            if id(n) in fused or id(n) in self.name:
                continue
            getattr(self, f"node_{n.kind}")(n, buffers.get(id(n)))

    def alloc(self, n: Node, target: str | None, zero: bool = False) -> str:
        name = self.new()
        self.name[id(n)] = name
        if n.ndim == 0:
            return name
        if target is not None:
            self.emit(f"{name} = {target}")
            if zero:
                self.emit(f"{name}[...] = 0.0")
        else:
            self.emit(f"{name} = np.{'zeros' if zero else 'empty'}({self.shape(n.shape)}"
                      f"{self.dtype})")
        return name

    def node_leaf(self, n: Leaf, target) -> None:
        raise AssertionError(f"leaf {n!r} is loaded up front")

    def node_map(self, n: Map, target) -> None:
        name = self.alloc(n, target)
        if n.ndim == 0:
            self.emit(f"{name} = {self.printer(n).doprint(n.expr)}")
            return
        loops, d = self.loops(n.shape)
        self.lines.extend(loops)
        self.emit(f"{name}[{', '.join(f'i{a}' for a in range(n.ndim))}] = "
                  f"{self.printer(n).doprint(n.expr)}", d)

    def node_reduce(self, n: Reduce, target) -> None:
        if n.op == "sum":
            return self.reduce_sum(n, target)
        (z,) = n.args
        src = self.load(z, tuple(range(z.ndim)))
        loops, d = self.loops(z.shape)
        kept, kd = self.loops(n.shape, 0, n.keep)

        def at(name: str) -> str:
            return f"{name}[{', '.join(f'i{a}' for a in n.keep)}]" if n.ndim else name

        # the running maximum (of the real part, for complex steps) of every kept element
        m = self.alloc(n, target) if n.op == "max" else self.new()
        mtype = "" if self.cplx else self.dtype  # the maximum of real parts is real
        if n.op == "max" and n.ndim:
            self.emit(f"{m}[...] = -np.inf")
        elif n.ndim:
            self.emit(f"{m} = np.full({self.shape(n.shape)}, -np.inf{mtype})")
        else:
            self.emit(f"{m} = -np.inf")
        self.lines.extend(loops)
        self.emit(f"{at(m)} = max({at(m)}, {src}{'.real' if self.cplx else ''})", d)
        if n.op == "max":
            return
        s = self.new()
        self.emit(f"{s} = np.zeros({self.shape(n.shape)}{self.dtype})" if n.ndim
                  else f"{s} = {self.zero}")
        self.lines.extend(loops)
        self.emit(f"if not math.isinf({at(m)}):", d)
        self.emit(f"{at(s)} += {self.lib}.exp({src} - {at(m)})", d + 1)
        out = self.alloc(n, target)
        self.lines.extend(kept)
        self.emit(f"{at(out)} = {at(m)} + {self.lib}.log({at(s)}) if not math.isinf({at(m)}) "
                  f"else {at(m)}", kd)

    def reduce_sum(self, n: Reduce, target) -> None:
        (z,) = n.args
        value = (self.printer(z).doprint(z.expr) if id(z) not in self.name
                 else self.load(z, tuple(range(z.ndim))))
        prefix = n.keep == tuple(range(len(n.keep)))
        if prefix:  # kept axes lead: accumulate in a scalar, store once per kept element
            name = self.alloc(n, target)
            outer, d = self.loops(n.shape)
            self.lines.extend(outer)
            self.emit(f"acc = {self.zero}", d)
            inner, d2 = self.loops(z.shape[len(n.keep):], d, tuple(range(len(n.keep), z.ndim)))
            self.lines.extend(inner)
            self.emit(f"acc += {value}", d2)
            self.emit(f"{name}[{', '.join(f'i{a}' for a in n.keep)}] = acc" if n.ndim
                      else f"{name} = acc", d)
            return
        name = self.alloc(n, target, zero=True)
        loops, d = self.loops(z.shape)
        self.lines.extend(loops)
        self.emit(f"{name}[{', '.join(f'i{a}' for a in n.keep)}] += {value}", d)

    def node_contract(self, n: Contract, target) -> None:
        name = self.alloc(n, target)
        (a, b), (la, lb, lo) = n.args, n.labels
        gemm = self.gemm(a, b, la, lb, lo, name)
        if gemm is not None:
            self.emit(gemm)
            return
        # loops over the output labels, then over the contracted ones
        red = [c for c in dict.fromkeys(la + lb) if c not in lo]
        size = dict(zip(la, a.shape, strict=True)) | dict(zip(lb, b.shape, strict=True))
        idx = {c: f"j{k}" for k, c in enumerate(dict.fromkeys(lo + "".join(red)))}
        d = 0
        for c in lo:
            self.emit(f"for {idx[c]} in range({self.size(size[c])}):", d)
            d += 1
        self.emit(f"acc = {self.zero}", d)
        for c in red:
            self.emit(f"for {idx[c]} in range({self.size(size[c])}):", d)
            d += 1
        ea = self.name[id(a)] + (f"[{', '.join(idx[c] for c in la)}]" if la else "")
        eb = self.name[id(b)] + (f"[{', '.join(idx[c] for c in lb)}]" if lb else "")
        self.emit(f"acc += {ea} * {eb}", d)
        out = f"{name}[{', '.join(idx[c] for c in lo)}]" if lo else name
        self.emit(f"{out} = acc", len(lo))

    def gemm(self, a, b, la, lb, lo, out) -> str | None:
        """``np.dot`` on 2-D views when the labels group as a matrix product, else None."""
        k = [c for c in la if c in lb and c not in lo]
        m = [c for c in la if c not in lb]
        p = [c for c in lb if c not in la]
        if any(c in la and c in lb for c in lo) or len(lo) == 0:
            return None
        if "".join(m + p) == lo:
            first, second = (a, la, m), (b, lb, p)
        elif "".join(p + m) == lo:
            first, second = (b, lb, p), (a, la, m)
        else:
            return None
        x1 = self.matrix(*first, k, free_first=True)
        x2 = self.matrix(*second, k, free_first=False)
        if x1 is None or x2 is None:
            return None
        rows = self.prod([s for s, c in zip(first[0].shape, first[1], strict=True)
                          if c in first[2]])
        cols = self.prod([s for s, c in zip(second[0].shape, second[1], strict=True)
                          if c in second[2]])
        lead = sum(1 for c in lo if c in first[2])
        return f"np.dot({x1}, {x2}, {self.as2d(out, len(lo), lead, rows, cols)})"

    def matrix(self, node, labels, free, k, free_first: bool) -> str | None:
        """``node`` as a 2-D (free, k) or (k, free) view, transposed when its axes say so."""
        name = self.name[id(node)]
        fsz = self.prod([s for s, c in zip(node.shape, labels, strict=True) if c in free])
        ksz = self.prod([s for s, c in zip(node.shape, labels, strict=True) if c in k])
        if labels == "".join(free) + "".join(k):
            view, t = self.as2d(name, node.ndim, len(free), fsz, ksz), not free_first
        elif labels == "".join(k) + "".join(free):
            view, t = self.as2d(name, node.ndim, len(k), ksz, fsz), free_first
        else:
            return None
        return f"{view}.T" if t else view

    @staticmethod
    def as2d(name: str, ndim: int, lead: int, rows: str, cols: str) -> str:
        """``name`` as a 2-D array (a reshape only where the axes group)."""
        if ndim == 2 and lead == 1:
            return name
        return f"{name}.reshape(({rows}, {cols}))"

    def prod(self, sizes) -> str:
        return " * ".join(self.size(s) for s in sizes) or "1"

    def node_element(self, n: Element, target) -> None:
        (a,) = n.args
        src = self.name[id(a)]
        idx = ", ".join(map(str, n.index))
        name = self.new()
        self.name[id(n)] = name
        self.emit(f"{name} = {src}[:, {idx}].copy()" if a.per_sample else f"{name} = {src}[{idx}]")

    def node_place(self, n: Place, target) -> None:
        name = self.alloc(n, target, zero=True)
        idx = ", ".join(map(str, n.index))
        v = self.name[id(n.args[0])]
        self.emit(f"{name}[:, {idx}] = {v}" if n.per_sample else f"{name}[{idx}] = {v}")


def _plan(outputs: list[Node]) -> tuple[list[Node], set[int]]:
    """Topological order and the Maps fused into their single consumer (a sum)."""
    order = topo(outputs)
    uses: dict[int, list[Node]] = {}
    for n in order:
        for a in n.args:
            uses.setdefault(id(a), []).append(n)
    outs = {id(o) for o in outputs}
    fused = set()
    for n in order:
        u = uses.get(id(n), [])
        if (isinstance(n, Map) and n.ndim and id(n) not in outs and len(u) == 1
                and isinstance(u[0], Reduce) and u[0].op == "sum"):
            fused.add(id(n))
    return order, fused


class _Module:
    def __init__(self, prob: ArrayProblem, policy: KinkPolicy, opts: CodegenOptions,
                 real: str) -> None:
        self.prob, self.policy, self.opts, self.real = prob, policy, opts, real
        self.grads = gradients(prob.loss, prob.params, policy)
        self.tangent = {p: Leaf("tangent", p.name, p.shape) for p in prob.params}
        self.hvps = tangents(self.grads, self.tangent, policy)
        self.cols = [_ident(d.name, "c_") for d in prob.data]
        self.sig = ", ".join(["dims", *self.cols, "idx"])

    def prologue(self, fn: _Fn, with_v: bool) -> list[str]:
        p = self.prob
        out = [f"{d} = dims[{k}]" for k, d in enumerate(fn.dim.values())]
        if p.data:
            out.append(f"n = {self.cols[0]}.shape[0]")
            out.append("nf = np.float32(n)" if fn.real == "float32" and not fn.cplx
                       else "nf = float(n)")
        offs = ["0"]
        for q in p.params:
            offs.append(f"o{len(offs)}")
            out.append(f"{offs[-1]} = {offs[-2]} + {fn.prod(q.shape) if q.shape else '1'}")
        out.append(f"if x.shape[0] != {offs[-1]}:")
        out.append(f'    raise ValueError("x must have one entry per parameter element '
                   f'({_esc(", ".join(p.param_names))})")')
        for d, c in zip(p.data, self.cols, strict=True):
            for ax, s in enumerate(d.shape):
                if s != N:
                    out.append(f"if {c}.shape[{ax}] != {fn.size(s)}:")
                    out.append(f'    raise ValueError("data array {_esc(d.name)}: wrong size on '
                               f'axis {ax}")')
            if d is not p.data[0]:
                out.append(f"if {c}.shape[0] != n:")
                out.append(f'    raise ValueError("data array {_esc(d.name)} has another number'
                           f' of samples")')
        for j, q in enumerate(p.params):
            for arr, role in (("x", "param"), ("v", "tangent")) if with_v else (("x", "param"),):
                leaf = q if role == "param" else self.tangent[q]
                name = _ident(q.name, "p_" if role == "param" else "v_")
                fn.name[id(leaf)] = name
                view = f"{arr}[{offs[j]}:{offs[j + 1]}]"
                out.append(f"{name} = {arr}[{offs[j]}]" if not q.shape
                           else f"{name} = {view}.reshape({fn.shape(q.shape)})")
        for d, c in zip(p.data, self.cols, strict=True):
            fn.name[id(d)] = c
            if fn.cplx:  # np.dot takes one dtype for all its arguments
                fn.name[id(d)] = f"z{c}"
                out.append(f"z{c} = {c}.astype(np.complex128)")
        self.offs = offs
        return out

    def function(self, value: Node | None, arrays: list | None, target: str | None,
                 with_v: bool = False, cplx: bool = False) -> list[str]:
        """A core function body: the loss value and/or one array per parameter into ``target``."""
        fn = _Fn(self.prob, cplx, self.real)
        head = self.prologue(fn, with_v)
        arrays = arrays or []
        nodes = ([value] if value is not None else []) + [o for o in arrays if o is not None]
        order, fused = _plan(nodes)
        buffers: dict[int, str] = {}
        views = [f"{target}[{self.offs[j]}:{self.offs[j + 1]}]" for j in range(len(arrays))]
        for j, (q, o) in enumerate(zip(self.prob.params, arrays, strict=False)):
            if o is not None and q.shape and id(o) not in buffers and not isinstance(o, Leaf):
                buffers[id(o)] = f"{views[j]}.reshape({fn.shape(q.shape)})"
        fn.body(order, fused, buffers)
        tail, written = [], set()
        for j, (q, o) in enumerate(zip(self.prob.params, arrays, strict=False)):
            if o is None:
                tail.append(f"{views[j]}[:] = 0.0")
            elif not q.shape:
                tail.append(f"{target}[{self.offs[j]}] = {fn.name[id(o)]}")
            elif buffers.get(id(o), "").startswith(views[j] + ".") and id(o) not in written:
                written.add(id(o))  # computed in place
            else:
                tail.append(f"{views[j]}[:] = {fn.name[id(o)]}.ravel()")
        if value is not None:
            tail.append(f"return {fn.name[id(value)]}")
        return head + fn.lines + tail

    def text(self) -> str:
        p = self.prob
        cols = ", ".join(self.cols)
        core = ", ".join(["dims", *self.cols])
        pub = core + (", idx" if p.data else "")
        fns = [
            _fn(f"_value(x, {core})", "The loss.", self.function(p.loss, None, None), _JIT),
            _fn(f"_value_and_grad(x, g, {core})", "The loss; its gradient into g.",
                self.function(p.loss, self.grads, "g"), _JIT),
            _fn(f"_hvp(x, v, out, {core})", "The Hessian at x times v, into out.",
                self.function(None, self.hvps, "out", with_v=True), _JIT),
        ]
        names = [("value", "x", "The loss at x (idx: None, or the sample indices of a batch)."),
                 ("value_and_grad", "x, g", "The loss at x; its gradient written into g."),
                 ("hvp", "x, v, out", "The Hessian at x times v, written into out.")]
        if p.analytic and self.real == "float64":
            fns.append(_fn(f"_value_complex(x, {core})", "The loss at a complex x.",
                           self.function(p.loss, None, None, cplx=True), _JIT))
            names.append(("value_complex", "x", "The loss at a complex x (complex-step checks)."))
        for name, lead, doc in names:
            if p.data:
                gathered = ", ".join(f"{c}[idx]" for c in self.cols)
                body = ["if idx is None:",
                        f"    return _{name}({lead}, dims, {cols})",
                        f"_check_rows(idx, {self.cols[0]}.shape[0])",
                        f"return _{name}({lead}, dims, {gathered})"]
            else:
                body = [f"return _{name}({lead}, dims)"]
            fns.append(_fn(f"{name}({lead}, {pub})", doc, body))
        fns.append(_fn(f"hessian(x, H, {pub})", "The Hessian at x, column by column, into H.", [
            "nn = x.shape[0]",
            "if H.shape[0] != nn or H.shape[1] != nn:",
            '    raise ValueError("H must be square with the length of x")',
            "e = np.zeros(nn, dtype=x.dtype)",
            "col = np.empty(nn, dtype=x.dtype)",
            "for j in range(nn):",
            "    e[j] = 1.0",
            f"    hvp(x, e, col, {pub})",
            "    H[:, j] = col",
            "    e[j] = 0.0",
            "for j in range(nn):",
            "    for k in range(j + 1, nn):",
            "        m = 0.5 * (H[j, k] + H[k, j])",
            "        H[j, k] = m",
            "        H[k, j] = m",
            "return H"]))
        return "\n\n\n".join(fns)


def _fn(sig: str, doc: str, lines: list[str], jit: str = "@numba.njit(cache=True)") -> str:
    return "\n".join([jit, f"def {sig}:", f'    """{doc}"""', *("    " + ln for ln in lines)])


_CHECK_ROWS = '''
@numba.njit(cache=True)
def _check_rows(idx, n):
    for i in range(idx.shape[0]):
        if idx[i] < 0 or idx[i] >= n:
            raise ValueError("idx: a sample index is out of range")
'''


def _header(prob: ArrayProblem, policy: KinkPolicy, opts: CodegenOptions, digest: str) -> str:
    def shp(q):
        names = {d.key: f"D{k}" for k, d in enumerate(prob.dims)}
        return "[" + ", ".join("N" if s == N else names[s.key] for s in q.shape) + "]"

    lines = [
        "# Generated by symgrad, do not edit.",
        f"# symgrad version: {opts.version}",
        "# loss (# is the sample axis, N the number of samples):",
        *(f"#   {_esc(ln)}" for ln in _wrap(program({"loss": prob.loss}))),
        f"# parameters (order of x, each flattened in C order): "
        f"{_esc(', '.join(q.name + shp(q) for q in prob.params))}",
        f"# data arrays: {_esc(', '.join(d.name + shp(d) for d in prob.data)) or 'none'}",
        "# sizes: dims[k] is the size named Dk",
        f"# kink policy: {policy.describe()}",
        f"# content hash: {digest}",
        f"# regenerate with: {_esc(opts.regenerate)}",
    ]
    return "\n".join(lines) + "\n"


def _wrap(s: str, width: int = 94, limit: int = 40) -> list[str]:
    lines = [ln[i:i + width] for ln in s.splitlines() for i in range(0, len(ln), width)]
    return lines if len(lines) <= limit else [*lines[:limit], "..."]


def array_module_source(prob: ArrayProblem, policy: KinkPolicy | None = None,
                        opts: CodegenOptions | None = None, real: str = "float64") -> str:
    """The generated module's text for an array loss (deterministic bytes, no sizes).

    ``real="float32"`` computes in float32 throughout (x, data, buffers and literals)."""
    if real not in ("float64", "float32"):
        raise ValueError(f"dtype must be float64 or float32, got {real!r}")
    policy, opts = policy or KinkPolicy(), opts or CodegenOptions()
    m = _Module(prob, policy, opts, real)
    body = "\n".join([
        '"""Value, gradient and Hessian-vector product of an array loss, compiled with Numba.',
        "",
        "x packs the parameters in PARAMS order, each flattened in C order; dims holds the sizes",
        "named in the header; data arrays are passed positionally in DATA order, then idx (None,",
        "or the int64 indices of a batch of samples). Results go into the array given (g, out, H),",
        "which must not share memory with x or v.",
        '"""',
        "",
        "import cmath  # noqa: F401",
        "import math",
        "",
        "import numba",
        "import numpy as np",
        "",
        f"PARAMS = {prob.param_names!r}",
        f"DATA = {tuple(d.name for d in prob.data)!r}",
        f"KINK_POLICY = {policy.describe()!r}",
        f"ANALYTIC = {prob.analytic!r}",
        f"DTYPE = {real!r}",
        f"_FASTMATH = {set(opts.fastmath) if opts.fastmath else False!r}".replace(
            "{'contract', 'reassoc'}", "{'reassoc', 'contract'}"),
        "",
        (_f32_helpers(HELPERS) if real == "float32" else HELPERS).strip("\n"),
        "",
        *([COMPLEX_HELPERS.strip("\n"), ""] if prob.analytic and real == "float64" else []),
        _CHECK_ROWS.rstrip("\n"),
        "",
        "",
        m.text(),
    ]) + "\n"
    digest = hashlib.sha256(body.encode()).hexdigest()[:16]
    return _header(prob, policy, opts, digest) + body
