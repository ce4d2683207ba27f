"""Array derivatives -> module text: BLAS calls for contractions, fused loops for the rest.

The module holds ``value``, ``value_and_grad``, ``hvp``, ``hessian`` (and ``value_complex`` for
analytic losses), each a thin wrapper (gathering a batch ``idx``) over a core function
(``_value``, ...: what :class:`~symgrad.runtime.array.ArrayKernel` calls). :mod:`.emit` writes
the cores' bodies: contractions that fit a matrix product print as BLAS calls on 2-D views
(SciPy's BLAS inside Numba), element-wise work as fused loops; ``_hessian`` computes the
forward and reverse sweeps once and then one gradient tangent per entry of x
(:mod:`.columns`). Sizes are read from the ``dims`` argument, so one module serves every size.

>>> import symgrad as sg
>>> from symgrad.ir.array_problem import array_problem
>>> w = sg.params("w", shape=(3,)); X = sg.data("X", shape=(3,))
>>> text = array_module_source(array_problem(sg.mean((X @ w)**2)))
>>> "_gemm(" in text and "def value_and_grad(x, g, dims, c_X, idx):" in text
True
"""

from __future__ import annotations

from ...ad.array import gradients, tangents, topo
from ...ad.derive import KinkPolicy
from ...ir.array_problem import ArrayProblem
from ...ir.formula import program
from ...ir.graph import Gather, Leaf, N, Node
from ...ir.ties import ties
from ...passes.reuse import reuse
from .columns import ColumnEmitter, column_loops, flat_index, seeded
from .emit import Emitter, plan
from .emit_par import PAR_WORK, ParEmitter
from .f32 import f32_helpers
from .gemm import GEMM_HELPER
from .skeleton import (
    JIT,
    CodegenOptions,
    assemble,
    esc,
    finish,
    fn,
    header,
    ident,
    jit,
    preamble,
    symmetrise,
    wrap,
)

__all__ = ["array_module_source"]

#: the core functions: dense loops and BLAS calls (the skeleton's fastmath policy)
CORE = jit(fastmath=True)
#: their parallel variants (:mod:`.emit_par`)
CORE_PAR = jit(fastmath=True, parallel=True)


def _idents(names, prefix: str) -> list[str]:
    """Distinct ASCII identifiers for user names (non-ASCII letters could otherwise collide)."""
    taken: set = set()
    return [ident(name, prefix, taken) for name in names]


class _Module:
    def __init__(self, prob: ArrayProblem, policy: KinkPolicy, opts: CodegenOptions,
                 real: str) -> None:
        self.prob, self.policy, self.opts, self.real = prob, policy, opts, real
        self.grads = gradients(prob.loss, prob.params, policy)
        self.tangent = {p: Leaf("tangent", p.name, p.shape) for p in prob.params}
        self.hvps = tangents(self.grads, self.tangent, policy)
        self.cols = _idents([d.name for d in prob.data], "c_")
        self.pnames = _idents(prob.param_names, "p_")
        #: the per-sample arrays (a batch picks their rows); the others are passed whole
        self.sampled = [c for d, c in zip(prob.data, self.cols, strict=True) if d.per_sample]
        #: (index column, size of the axis it picks from, the array's name): checked on entry
        self.gathers = sorted({(n.args[1], n.args[0].shape[0], n.source_name) for n in
                               topo([prob.loss]) if isinstance(n, Gather)},
                              key=lambda g: (g[0].name, g[2]))

    def prologue(self, fn: Emitter, with_v: bool) -> list[str]:
        p = self.prob
        k = len(fn.dim)
        out = [f"if dims.shape[0] != {k}:",  # (an index past its end reads other memory)
               f'    raise ValueError("dims must hold the {k} sizes D0..D{k - 1} of the header")',
               *[f"{d} = dims[{j}]" for j, d in enumerate(fn.dim.values())]]
        root = p.output if hasattr(p, "output") else p.loss
        for a, b in ties([root]):  # a size that breaks a tie would read past an array
            what = " and ".join(f"{fn.size(d)} ({esc(d.owner)} axis {d.axis})" for d in (a, b))
            out += [f"if {fn.size(a)} != {fn.size(b)}:",
                    f'    raise ValueError("dims: the sizes {what} must be equal")']
        if self.sampled:
            out.append(f"n = {self.sampled[0]}.shape[0]")
            out.append("nf = np.float32(n)" if fn.real == "float32" and not fn.cplx
                       else "nf = float(n)")
        offs = ["0"]
        for q in p.params:
            offs.append(f"o{len(offs)}")
            out.append(f"{offs[-1]} = {offs[-2]} + {fn.prod(q.shape) if q.shape else '1'}")
        out.append(f"if x.shape[0] != {offs[-1]}:")
        out.append(f'    raise ValueError("x must have one entry per parameter element '
                   f'({esc(", ".join(p.param_names))})")')
        for d, c in zip(p.data, self.cols, strict=True):
            for ax, s in enumerate(d.shape):
                if s != N:
                    out.append(f"if {c}.shape[{ax}] != {fn.size(s)}:")
                    out.append(f'    raise ValueError("data array {esc(d.name)}: wrong size on '
                               f'axis {ax}")')
            if d.per_sample and c != self.sampled[0]:
                out.append(f"if {c}.shape[0] != n:")
                out.append(f'    raise ValueError("data array {esc(d.name)} has another number'
                           f' of samples")')
        self.checks = len(out)  # where the parallel variant falls back to the serial core
        for k, (rows, size, src) in enumerate(self.gathers):
            c = self.cols[p.data.index(rows)]
            bad = f"{c}[r] < 0 or {c}[r] >= {fn.size(size)}"
            msg = (f'raise ValueError("index column {esc(rows.name)}: a row is out of range '
                   f'for {esc(src)}")')
            if isinstance(fn, ParEmitter):  # rows out of range counted by the threads
                out += [f"bad{k} = 0", "for r in numba.prange(n):", f"    if {bad}:",
                        f"        bad{k} += 1", f"if bad{k}:", f"    {msg}"]
            else:
                out += ["for r in range(n):", f"    if {bad}:", f"        {msg}"]
        for j, q in enumerate(p.params):
            for arr, role in (("x", "param"), ("v", "tangent")) if with_v else (("x", "param"),):
                leaf = q if role == "param" else self.tangent[q]
                name = self.pnames[j] if role == "param" else "v" + self.pnames[j][1:]
                fn.name[id(leaf)] = name
                view = f"{arr}[{offs[j]}:{offs[j + 1]}]"
                out.append(f"{name} = {arr}[{offs[j]}]" if not q.shape
                           else f"{name} = {view}.reshape({fn.shape(q.shape)})")
        for d, c in zip(p.data, self.cols, strict=True):
            fn.name[id(d)] = c
            if fn.cplx and d.role == "data":  # gemm takes one dtype for all its arguments
                fn.name[id(d)] = f"z{c}"
                out.append(f"z{c} = {c}.astype(np.complex128)")
        self.offs = offs
        return out

    def function(self, value: Node | None, arrays: list | None, target: str | None,
                 with_v: bool = False, cplx: bool = False, serial: str = "") -> list[str]:
        """A core function body: the loss value and/or one array per parameter into ``target``.

        ``serial`` (the serial core's call) asks for the parallel variant, which makes that
        call when its largest loop is small, or is that call alone when nothing is parallel."""
        fn = (ParEmitter if serial else Emitter)(self.prob, cplx, self.real)
        head = self.prologue(fn, with_v)
        value, *arrays = reuse([value, *(arrays or [])])
        nodes = ([value] if value is not None else []) + [o for o in arrays if o is not None]
        order, virtual = plan(nodes)
        buffers: dict[int, str] = {}
        views = [f"{target}[{self.offs[j]}:{self.offs[j + 1]}]" for j in range(len(arrays))]
        for j, (q, o) in enumerate(zip(self.prob.params, arrays, strict=False)):
            if o is not None and q.shape and id(o) not in buffers and not isinstance(o, Leaf):
                buffers[id(o)] = f"{views[j]}.reshape({fn.shape(q.shape)})"
        fn.body(order, virtual, buffers)
        tail, written = [], set()
        for j, (q, o) in enumerate(zip(self.prob.params, arrays, strict=False)):
            if o is None:
                tail.append(f"{views[j]}[:] = 0.0")
            elif not q.shape:
                tail.append(f"{target}[{self.offs[j]}] = {fn.name[id(o)]}")
            elif buffers.get(id(o), "").startswith(views[j] + ".") and id(o) not in written:
                written.add(id(o))  # computed in place
            else:  # element by element: a slice assignment from an array makes Numba compile
                # its shape-mismatch message (str of ints), seconds of a process's first call
                tail += [f"_flat{j} = {fn.name[id(o)]}.ravel()",
                         f"for _q in range(_flat{j}.shape[0]):",
                         f"    {target}[{self.offs[j]} + _q] = _flat{j}[_q]"]
        if value is not None:
            tail.append(f"return {fn.name[id(value)]}")
        if serial:
            if not fn.work:
                return [f"return {serial}"]
            work = list(dict.fromkeys(fn.work))
            work = work[0] if len(work) == 1 else f"max({', '.join(work)})"
            head[self.checks:self.checks] = [f"if {work} < {PAR_WORK}:", f"    return {serial}"]
        return head + fn.lines + tail

    def hessian(self) -> list[str]:
        """The Hessian column by column (:func:`~.columns.column_loops`): the loss's forward
        and reverse sweeps and the tangents' coefficients once, then per entry of x the HVP's
        part that is linear in the direction, stored into its row of H; then symmetrised."""
        params = self.prob.params
        seeds = [self.tangent[p] for p in params]
        cols, together = seeded(self.grads, params, seeds, self.policy)
        fn = ColumnEmitter(self.prob, False, self.real)
        head = [*self.prologue(fn, False),
                "if H.shape[0] != x.shape[0] or H.shape[1] != x.shape[0]:",
                '    raise ValueError("H must be square with the length of x")',
                "if _overlap(H, x):",
                '    raise ValueError("out (the Hessian H) overlaps x in memory: pass a separate '
                'output array")']

        def store(j: str, cs) -> None:
            for i, (q, c) in enumerate(zip(params, cs, strict=True)):
                idx = fn.idx(range(len(q.shape)))
                loops, d = fn.loops(q.shape)
                fn.lines.extend(loops)
                at = f"{self.offs[i]} + {flat_index(fn, q.shape, idx)}"
                fn.emit(f"H[{j}, {at}] = {fn.zero if c is None else fn.expr(c, idx)}", d)

        names = [n[2:] for n in self.pnames]
        return [*head, *column_loops(fn, params, seeds, cols, names, self.offs, store,
                                     together), *symmetrise("x.shape[0]"), "return H"]

    def functions(self) -> list[str]:
        p = self.prob
        cols = ", ".join(self.cols)
        core = ", ".join(["dims", *self.cols])
        pub = core + (", idx" if self.sampled else "")
        fns = [
            fn(f"_value(x, {core})", "The loss.", self.function(p.loss, None, None), CORE),
            fn(f"_value_and_grad(x, g, {core})", "The loss; its gradient into g.",
                self.function(p.loss, self.grads, "g"), CORE),
            fn(f"_hvp(x, v, out, {core})", "The Hessian at x times v, into out.",
                self.function(None, self.hvps, "out", with_v=True), CORE),
            fn(f"_hessian(x, H, {core})", "The (symmetrised) Hessian at x, into H.",
                self.hessian(), CORE),
        ]
        for name, lead, value, arrays, target in (
                ("value", "x", p.loss, None, None),
                ("value_and_grad", "x, g", p.loss, self.grads, "g"),
                ("hvp", "x, v, out", None, self.hvps, "out")):
            serial = f"_{name}({lead}, {core})"
            lines = self.function(value, arrays, target, with_v=name == "hvp", serial=serial)
            fns.append(fn(f"_{name}_par({lead}, {core})",
                          f"_{name} with threads (same result for any number of them).",
                          lines, CORE_PAR if len(lines) > 1 else JIT))
        names = [("value", "x", "The loss at x (idx: None, or the sample indices of a batch)."),
                 ("value_and_grad", "x, g", "The loss at x; its gradient written into g."),
                 ("hvp", "x, v, out", "The Hessian at x times v, written into out."),
                 ("hessian", "x, H", "The (symmetrised) Hessian at x, written into H.")]
        if p.analytic and self.real == "float64":
            fns.append(fn(f"_value_complex(x, {core})", "The loss at a complex x.",
                           self.function(p.loss, None, None, cplx=True), CORE))
            names.append(("value_complex", "x", "The loss at a complex x (complex-step checks)."))
        for name, lead, doc in names:
            if self.sampled:
                gathered = ", ".join(f"{c}[idx]" if c in self.sampled else c for c in self.cols)
                body = ["if idx is None:",
                        f"    return _{name}({lead}, dims, {cols})",
                        f"_check_rows(idx, {self.sampled[0]}.shape[0])",
                        f"return _{name}({lead}, dims, {gathered})"]
            else:
                body = [f"return _{name}({lead}, {core})"]
            fns.append(fn(f"{name}({lead}, {pub})", doc, body))
        return fns


_CHECK_ROWS = f'''
{JIT}
def _check_rows(idx, n):
    for i in range(idx.shape[0]):
        if idx[i] < 0 or idx[i] >= n:
            raise ValueError("idx: a sample index is out of range")
'''


def array_header(prob: ArrayProblem, policy: KinkPolicy, opts: CodegenOptions, digest: str) -> str:
    def shp(q):
        names = {d.key: f"D{k}" for k, d in enumerate(prob.dims)}
        return "[" + ", ".join("N" if s == N else names[s.key] for s in q.shape) + "]"

    return header(opts, policy, [
        "# loss (# is the sample axis, N the number of samples):",
        *(f"#   {esc(ln)}" for ln in wrap(program({"loss": prob.loss}), limit=40)),
        f"# parameters (order of x, each flattened in C order): "
        f"{esc(', '.join(q.name + shp(q) for q in prob.params))}",
        f"# data arrays: {esc(', '.join(d.name + shp(d) for d in prob.data)) or 'none'}",
        "# sizes: dims[k] is the size named Dk; sizes the loss ties (the axes a product or an",
        "#   element-wise operation pairs) must be equal (checked on entry)",
    ], digest)


def array_module_source(prob: ArrayProblem, policy: KinkPolicy | None = None,
                        opts: CodegenOptions | None = None, real: str = "float64") -> str:
    """The generated module's text for an array loss (deterministic bytes, no sizes).

    ``real="float32"`` computes in float32 throughout (x, data, buffers and literals)."""
    if real not in ("float64", "float32"):
        raise ValueError(f"dtype must be float64 or float32, got {real!r}")
    policy, opts = policy or KinkPolicy(), opts or CodegenOptions()
    fns = _Module(prob, policy, opts, real).functions()
    head = preamble([
        "Value, gradient and Hessian-vector product of an array loss, compiled with Numba.",
        "",
        "x packs the parameters in PARAMS order, each flattened in C order; dims holds the sizes",
        "named in the header; data arrays are passed positionally in DATA order, then idx (None,",
        "or the int64 indices of a batch of samples). Results go into the array given (g, out, H),",
        "which must not share memory with x or v."], [
        ("PARAMS", prob.param_names), ("DATA", tuple(d.name for d in prob.data)),
        ("KINK_POLICY", policy.describe()), ("ANALYTIC", prob.analytic), ("DTYPE", real)], opts)
    body = assemble(head, fns, [_CHECK_ROWS], gemm(fns),
                    f32_helpers if real == "float32" else None)
    return finish(body, lambda digest: array_header(prob, policy, opts, digest))


def gemm(functions: list[str]) -> list[str]:
    """The BLAS overload, when the functions call it (it precedes the helpers)."""
    return [GEMM_HELPER] if any("_gemm(" in f for f in functions) else []
