"""A model -> module text: ``predict``, ``jvp``, ``jacobian`` and ``vjp``, by the loss emitter.

The bodies are those of loss modules (:mod:`.codegen`, :mod:`.emit`): the same prologue (sizes
from ``dims``, parameter views of ``x``, data checks), BLAS calls for contractions and fused
loops for the rest, the output written in place into ``out``. ``jvp`` is the forward tangent of
the output along a parameter direction ``v``; ``jacobian`` stacks one tangent per parameter
(meant for small P): the forward work once, then each column's linear part (:mod:`.columns`).

>>> import symgrad as sg
>>> from symgrad.ir.model_problem import model_problem
>>> W = sg.params("W", shape=(3, 2)); X = sg.data("X", shape=(2,))
>>> text = model_module_source(model_problem(W @ X))
>>> "_gemm(c_X, p_W.T, t1)" in text and "def predict(x, out, dims, c_X):" in text
True
"""

from __future__ import annotations

import sympy as sp

from ...ad.array import tangents, topo, vjp
from ...ad.derive import KinkPolicy
from ...ir.formula import program
from ...ir.graph import Gather, Leaf, Map, N, Node, map_
from ...ir.model_problem import ModelProblem
from ...passes.hoist import hoist
from ...passes.reuse import reuse
from .array_module import _CHECK_ROWS, CORE, _idents, _Module, gemm
from .columns import ColumnEmitter, column_loops, moving, seeded
from .emit import Emitter, plan
from .f32 import f32_helpers
from .skeleton import CodegenOptions, assemble, esc, finish, fn, header, preamble, wrap

__all__ = ["model_header", "model_module_source"]


class _ModelModule(_Module):
    """The loss module's prologue and emitter, driven for one per-sample output."""

    def __init__(self, prob: ModelProblem, policy: KinkPolicy, opts: CodegenOptions,
                 real: str) -> None:
        self.prob, self.policy, self.opts, self.real = prob, policy, opts, real
        self.tangent = {p: Leaf("tangent", p.name, p.shape) for p in prob.params}
        (self.dout,) = tangents([prob.output], self.tangent, policy)
        #: per-sample float data arrays -> (their tangent leaf, the output's tangent along
        #: it, the array's adjoint for the output's cotangent ``self.cot``)
        self.dseeds = {}
        self.cot = Leaf("tangent", "cotangent", prob.output.shape)
        for d in prob.data:
            if d.role == "data" and d.per_sample:
                seed = Leaf("tangent", d.name, d.shape)
                (adj,) = vjp([prob.output], [self.cot], [d], policy)
                self.dseeds[d] = (seed, tangents([prob.output], {d: seed}, policy)[0], adj)
        self.cols = _idents([d.name for d in prob.data], "c_")
        self.pnames = _idents(prob.param_names, "p_")
        self.sampled = [c for d, c in zip(prob.data, self.cols, strict=True) if d.per_sample]
        self.gathers = sorted({(n.args[1], n.args[0].shape[0], getattr(n.args[0], "name",
                                                                        "an array"))
                               for n in topo([prob.output]) if isinstance(n, Gather)},
                              key=lambda g: (g[0].name, g[2]))

    def prologue(self, fn: Emitter, with_v: bool) -> list[str]:
        fn.name[id(self.cot)] = "v"  # the outputs' cotangent, where a function reads it
        return super().prologue(fn, with_v)

    def vjp(self, core: str) -> str:
        """``vjp``: the gradient in x of ``sum(outputs * v)``, the loss module's reverse sweep
        from the cotangent ``v`` (a dense layer's weights: one GEMM over the samples)."""
        adj = vjp([self.prob.output], [self.cot], list(self.prob.params), self.policy)
        body = self.function(None, adj, "g")
        em = Emitter(self.prob, False, self.real)
        checks = ["if g.shape[0] != x.shape[0]:",
                  '    raise ValueError("g must have the length of x")']
        for ax, s in enumerate(self.cot.shape):
            checks += [f"if v.shape[{ax}] != {em.size(s)}:",
                       f'    raise ValueError("v: wrong size on axis {ax}")']
        return fn(f"vjp(x, v, g, {core})", "The gradient in x of sum(outputs * v) (v: the "
                      "outputs' cotangent, a row per sample), into g.",
                      body[:self.checks] + checks + body[self.checks:], CORE)

    def data_jacobian(self, d: Leaf, adj: Node, core: str) -> str:
        """``jac_<X>``: each sample's outputs by its own row of data array ``d``, one reverse
        sweep per output entry from a unit cotangent, the forward values computed once before
        them (what reads no cotangent)."""
        em = Emitter(self.prob, False, self.real)
        head = self.prologue(em, False)
        shape, inner = self.prob.output.shape[1:], d.shape[1:]
        outs, width = em.prod(shape), em.prod(inner)
        full = (N, *shape, *inner)
        for ax, s in enumerate(full):
            head += [f"if J.shape[{ax}] != {em.size(s)}:",
                     f'    raise ValueError("J: wrong size on axis {ax}")']
        (adj,) = reuse(hoist([adj], [self.cot]))  # coefficients such as exp(z - lse): once
        order, virtual = plan([adj])
        swept = moving(order, [self.cot])
        for n in order:  # what a sweep reads of the forward work: computed once, stored
            if id(n) in swept:
                virtual -= {id(a) for a in n.args if id(a) not in swept and isinstance(a, Map)}
        em.body([n for n in order if id(n) not in swept], virtual, {})
        once, em.lines = em.lines, []
        em.body([n for n in order if id(n) in swept], virtual, {id(adj): "r"})
        if isinstance(adj, Leaf):  # the output is the array itself
            em.store(adj, "r")
        sweep = ["jr = r.reshape((n, " + width + "))", "for i0 in range(n):",
                 f"    for i1 in range({width}):", "        Jf[i0, jq, i1] = jr[i0, i1]"]
        return fn(f"jac{self.cols[self.prob.data.index(d)][1:]}(x, J, {core})",
                  f"Each sample's outputs by its own row of data array {esc(d.name)}, into J "
                  "(outputs' shape, then the row's).", [
                      *head, *once, f"w = np.zeros((n, {outs}), dtype=x.dtype)",
                      f"v = w.reshape({em.shape(self.cot.shape)})",
                      f"r = np.empty({em.shape(d.shape)}, dtype=x.dtype)",
                      f"Jf = J.reshape((n, {outs}, {width}))", f"for jq in range({outs}):",
                      "    for i0 in range(n):", "        w[i0, jq] = 1.0",
                      *("    " + ln for ln in [*em.lines, *sweep]),
                      "    for i0 in range(n):", "        w[i0, jq] = 0.0", "return J"], CORE)

    def output(self, node: Node | None, with_v: bool, seed: Leaf | None = None) -> list[str]:
        """A body writing ``node`` (the output or its tangent; None: zero) into ``out`` (of
        the output's shape); ``seed``: a data array's tangent, read from ``v`` (one row per
        sample)."""
        fn = Emitter(self.prob, False, self.real)
        head = self.prologue(fn, with_v)
        if seed is not None:
            fn.name[id(seed)] = "v"
            for ax, s in enumerate(seed.shape):
                head.append(f"if v.shape[{ax}] != {fn.size(s)}:")
                head.append(f'    raise ValueError("v: wrong size on axis {ax}")')
        shape = self.prob.output.shape
        for ax, s in enumerate(shape):
            head.append(f"if out.shape[{ax}] != {fn.size(s)}:")
            head.append(f'    raise ValueError("out: wrong size on axis {ax}")')
        if node is None:
            fn.set_all("out", shape, fn.zero)
            return head + fn.lines
        order, virtual = plan([node])
        fn.body(order, virtual, {} if isinstance(node, Leaf) else {id(node): "out"})
        if isinstance(node, Leaf):  # the output is a data array itself: copy it
            fn.store(node, "out")
        return head + fn.lines

    def jacobian(self, core: str) -> str:
        """``jacobian``: with scalar parameters only (a fitted curve), every column in one pass
        (the tangents share the forward work); otherwise one loop per parameter array over
        its entries, the work that does not depend on the direction done once before them."""
        doc = "The outputs' Jacobian in x, into J (outputs' shape, then len(x))."
        scalars = self.prob.params and all(not p.shape for p in self.prob.params)
        body = self.fused_jacobian() if scalars else self.column_jacobian()
        return fn(f"jacobian(x, J, {core})", doc, body, CORE)

    def _j_head(self, fn: Emitter, ncols: str) -> list[str]:
        """The prologue and the checks of J's shape."""
        head = self.prologue(fn, False)
        shape = self.prob.output.shape
        for ax, s in enumerate(shape):
            head.append(f"if J.shape[{ax}] != {fn.size(s)}:")
            head.append(f'    raise ValueError("J: wrong size on axis {ax}")')
        head.append(f"if J.shape[{len(shape)}] != {ncols}:")
        head.append('    raise ValueError("J: its last axis must have the length of x")')
        return head

    def column_jacobian(self) -> list[str]:
        """Column by column (:func:`~.columns.column_loops`): the forward values and the
        tangents' coefficients once, then per entry of x the tangent's linear part (for a
        dense layer, one product with the unit direction and one multiply per output)."""
        params = self.prob.params
        seeds = [self.tangent[p] for p in params]
        cols, together = seeded([self.prob.output], params, seeds, self.policy)
        fn = ColumnEmitter(self.prob, False, self.real)
        head = self._j_head(fn, "x.shape[0]")
        shape = self.prob.output.shape
        idx = fn.idx(range(len(shape)))

        def store(j: str, cs) -> None:
            loops, d = fn.loops(shape)
            fn.lines.extend(loops)
            value = fn.zero if cs[0] is None else fn.expr(cs[0], idx)
            fn.emit(f"J[{', '.join(idx)}, {j}] = {value}", d)

        names = [n[2:] for n in self.pnames]
        return [*head, *column_loops(fn, params, seeds, cols, names, self.offs, store,
                                     together), "return J"]

    def fused_jacobian(self) -> list[str]:
        """One tangent per scalar parameter (seeded with 1), written column by column."""
        one = map_(sp.S.One, [], ())
        cols = [tangents([self.prob.output], {p: one}, self.policy)[0]
                for p in self.prob.params]
        fn = Emitter(self.prob, False, self.real)
        head = self._j_head(fn, str(len(cols)))
        shape = self.prob.output.shape
        order, virtual = plan([c for c in cols if c is not None])
        virtual |= {id(c) for c in cols if isinstance(c, Map)}  # computed where J is written
        fn.body(order, virtual, {})
        idx = fn.idx(range(len(shape)))
        loops, d = fn.loops(shape)
        fn.lines.extend(loops)
        for j, c in enumerate(cols):
            value = fn.zero if c is None else fn.expr(c, idx)
            fn.emit(f"J[{', '.join(idx)}, {j}] = {value}", d)
        return head + fn.lines + ["return J"]

    def functions(self) -> list[str]:
        core = ", ".join(["dims", *self.cols])
        by_data = []
        for d, (seed, dt, adj) in self.dseeds.items():
            c = self.cols[self.prob.data.index(d)]
            by_data.append(fn(f"jvp{c[1:]}(x, v, out, {core})",
                               f"d outputs along a direction v of data array {esc(d.name)} "
                               "(a row per sample), into out.",
                               self.output(dt, False, seed), CORE))
            if adj is not None:
                by_data.append(self.data_jacobian(d, adj, core))
        return [
            fn(f"predict(x, out, {core})", "The outputs at x, one row per sample, into out.",
                self.output(self.prob.output, False), CORE),
            fn(f"jvp(x, v, out, {core})",
                "The outputs' derivative along the parameter direction v, into out.",
                self.output(self.dout, True), CORE),
            self.jacobian(core),
            self.vjp(core),
            *by_data,
        ]


def model_header(prob: ModelProblem, policy: KinkPolicy, opts: CodegenOptions,
                 digest: str) -> str:
    names = {d.key: f"D{k}" for k, d in enumerate(prob.dims)}

    def size(s) -> str:  # a part (a slice) is its axis less what it trims
        if s == N:
            return "N"
        return names[(s.owner, s.axis, 0)] + (f" - {s.trim}" if s.trim else "")

    def shp(q) -> str:
        return "[" + ", ".join(size(s) for s in q.shape) + "]"

    return header(opts, policy, [
        "# model (# is the sample axis, N the number of samples):",
        *(f"#   {esc(ln)}" for ln in wrap(program({"output": prob.output}), limit=40)),
        f"# output shape: {shp(prob.output)}",
        f"# parameters (order of x, each flattened in C order): "
        f"{esc(', '.join(q.name + shp(q) for q in prob.params))}",
        f"# data arrays: {esc(', '.join(d.name + shp(d) for d in prob.data)) or 'none'}",
        "# sizes: dims[k] is the size named Dk; sizes the loss ties (the axes a product or an",
        "#   element-wise operation pairs) must be equal (checked on entry)",
    ], digest)


def model_module_source(prob: ModelProblem, policy: KinkPolicy | None = None,
                        opts: CodegenOptions | None = None, real: str = "float64") -> str:
    """The generated module's text for a model (deterministic bytes, no sizes)."""
    if real not in ("float64", "float32"):
        raise ValueError(f"dtype must be float64 or float32, got {real!r}")
    policy, opts = policy or KinkPolicy(), opts or CodegenOptions()
    fns = _ModelModule(prob, policy, opts, real).functions()
    head = preamble([
        "Per-sample outputs of an array model and their derivatives, compiled with Numba.",
        "",
        "x packs the parameters in PARAMS order, each flattened in C order; dims holds the sizes",
        "named in the header; data arrays are passed positionally in DATA order. out has one row",
        "per sample (the output shape in the header); J adds a last axis of len(x). Results go",
        "into the array given, which must not share memory with x, v or the data."], [
        ("PARAMS", prob.param_names), ("DATA", tuple(d.name for d in prob.data)),
        ("KINK_POLICY", policy.describe()), ("DTYPE", real)], opts)
    body = assemble(head, fns, [_CHECK_ROWS], gemm(fns),
                    f32_helpers if real == "float32" else None)
    return finish(body, lambda digest: model_header(prob, policy, opts, digest))
