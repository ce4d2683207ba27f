"""Derivatives -> the text of a standalone Python module (deterministic bytes).

The module needs only ``math``, ``cmath``, NumPy and Numba. Parameter-only losses become
straight-line functions of ``x``; losses with reductions become one loop over samples that
accumulates the value, gradient (and Hessian-vector) sums of every reduction in the same pass,
followed by the outer chain rule. Parallel variants split the samples into chunks under
``numba.prange``. With ``real="float32"`` the sample loops compute each sample's terms in
float32 (float32 columns, parameters and literals), sum them in float32 over blocks of
``F32_BLOCK`` samples and the blocks' sums in float64; ``x``, the outer chain rule and the
results stay float64 (:func:`check_dtype` says which losses cannot).

>>> import symgrad as sg
>>> from symgrad.ir.problem import problem
>>> from symgrad.ad.derive import derive
>>> x1, x2 = sg.params("x1 x2")
>>> text = module_source(derive(problem((x2 - x1**2)**2 + (1 - x1)**2)))
>>> "def value_and_grad(x, g):" in text
True
"""

from __future__ import annotations

import sympy as sp

from ...ad.derive import Derivatives, Tmp
from .f32 import F32Printer, f32_helpers
from .names import RESERVED, CodegenOptions, TmpNames, column_args, ident
from .printer import ComplexPrinter, ScalarPrinter
from .samples import F32_BLOCK, _SampleFns
from .skeleton import assemble, esc, finish, fn, hessian_fn, lse_helper, preamble
from .text import header
from .vectors import _VectorFns

__all__ = ["check_dtype", "module_source"]


class _Gen(_SampleFns, _VectorFns):
    def __init__(self, der: Derivatives, opts: CodegenOptions, real: str = "float64") -> None:
        self.der, self.opts = der, opts
        p = der.problem
        self.prob = p
        #: float32: the per-sample terms in float32 (no complex-step variant: it is float64)
        self.f32 = real == "float32"
        self.analytic = p.analytic and not self.f32
        self.n = len(p.params)
        self.K = len(p.reductions)
        taken = set(RESERVED)
        args = column_args([c.name for c in p.columns] + [e.name for e in p.elements], taken)
        names: dict = {}
        for s in p.params:
            names[s] = ident(s.name, "p_", taken)
        for s in p.data_symbols:
            names[s] = ident(s.name, "d_", taken)
        for j, s in enumerate(der.v):
            names[s] = f"v{j}"
        for k, r in enumerate(p.reductions):
            names[r.symbol] = f"r{k}"
        for k, s in enumerate(der.u):
            names[s] = f"u{k}"
        self.names = TmpNames(names)
        self.M = len(p.vectors)
        self.cols, self.ecols = args[:len(p.columns)], args[len(p.columns):]
        self.col_of = dict(zip([c.name for c in p.columns], self.cols, strict=True))
        self.ecol_of = dict(zip(p.elements, self.ecols, strict=True))
        self.real = ScalarPrinter(self.names)
        self.cplx = ComplexPrinter(self.names)
        #: the printer of the per-sample terms (float32 literals in a float32 module)
        self.sample_pr = F32Printer(self.names) if self.f32 else self.real
        self.sub: dict = {}
        self.emitted: set = set()
        for k, vs in enumerate(p.vector_sums):
            names[vs.symbol] = f"s{k}"
            names[vs.index] = "float(i)"
        for vec in p.vectors:
            names[vec.length] = "n"
        for el, col in self.ecol_of.items():
            names[el.length] = f"{col}.shape[0]"
        for vt in der.vsums:
            for (y, _, _), vy in zip(vt.locals, vt.vy, strict=True):
                names[y] = ident(y.name, "", taken)
                names[vy] = ident(vy.name, "", taken)
            for e, _, _ in vt.elements:
                names[e] = ident(e.name, "", taken)
        self.names.update(names)
        self.ns = len(p.params)
        self.vec_pos = {vec: j for j, vec in enumerate(p.vectors)}

    # -- pieces ---------------------------------------------------------------------------
    def assigns(self, prog, outs: tuple[str, ...], printer, fresh: bool = True) -> list[str]:
        """Statements computing the named outputs; temporaries used once are inlined for
        readability (``self.sub`` then maps them for the output statements). ``fresh=False``
        continues the previous call's function body (its temporaries are in scope)."""
        if fresh:
            self.sub, self.emitted = {}, set()
        sched = [(t, e) for t, e in prog.schedule(*outs)
                 if t not in self.sub and t not in self.emitted]
        uses: dict = {}
        for e in [e for _, e in sched] + [o for n in outs for o in prog.outputs[n]]:
            for s in e.free_symbols:
                if isinstance(s, Tmp):
                    uses[s] = uses.get(s, 0) + 1
        lines = []
        for t, e in sched:
            e = e.xreplace(self.sub) if self.sub else e
            if uses.get(t, 0) <= 1 and fresh:
                self.sub[t] = e
            else:
                self.emitted.add(t)
                lines.append(f"{printer._print(t)} = {printer.doprint(e)}")
        return lines

    def load_params(self, sample: bool = False) -> list[str]:
        """``p_a = x[0]``...; in a float32 module's sample loop, rounded to float32."""
        f = "np.float32({})" if sample and self.f32 else "{}"
        return [f"{self.names[s]} = {f.format(f'x[{j}]')}" for j, s in enumerate(self.prob.params)]

    def load_v(self, sample: bool = False) -> list[str]:
        f = "np.float32({})" if sample and self.f32 else "{}"
        return [f"v{j} = {f.format(f'v[{j}]')}" for j in range(self.n)]

    def load_data(self, view: dict | None = None) -> list[str]:
        """A sample's data values, read from the columns (or the arrays ``view`` maps a
        column's argument to: a float32 module's block views)."""
        out = []
        # float64 modules promote float32 columns before any arithmetic (numba keeps float(f32)
        # as f32); float32 modules compute in float32 whatever column they are given
        cast = "np.float32" if self.f32 else "np.float64"
        for s in self.prob.data_symbols:
            col = self.col_of[s.column]
            col = (view or {}).get(col, col)
            out.append(f"{self.names[s]} = {cast}({col}[i])" if s.component is None
                       else f"{self.names[s]} = {cast}({col}[i, {s.component}])")
        return out

    def check_x(self, arg: str = "x") -> str:
        names = ", ".join(self.prob.param_names[:8]) + (", ..." if self.n > 8 else "")
        what = "out (the gradient array g)" if arg == "g" else arg
        return (f'if {arg}.shape[0] != {self.n}:\n'
                f'    raise ValueError("{what} must have {self.n} entries ({esc(names)})")')

    def no_alias(self, out: str, *ins: str) -> list[str]:
        """Refuse an output array that overlaps an input (the code writes it before reading
        them all): ``out`` is the argument name, ``ins`` the inputs it must not overlap."""
        what = "out (the gradient array g)" if out == "g" else "out (the Hessian H)" \
            if out == "H" else "out"
        return [f'if _overlap({out}, {a}):\n    raise ValueError("{what} overlaps {a} in '
                'memory: pass a separate output array")' for a in ins]

    def p(self, e, printer=None) -> str:
        e = sp.sympify(e, strict=True)
        return (printer or self.real).doprint(e.xreplace(self.sub) if self.sub else e)

    # -- module ---------------------------------------------------------------------------
    def source(self) -> str:
        return finish(self.body(), self.header)

    def header(self, digest: str) -> str:
        return header(self.prob, self.der.policy, self.opts, digest)

    def body(self) -> str:
        p = self.prob
        f32 = ["Each sample's terms are computed in float32 (DTYPE: float32 data columns, x",
               "rounded to float32 in the sample loop), summed in float32 over blocks of "
               f"{F32_BLOCK}",
               "samples and the blocks' sums in float64; x, the results and the outer chain",
               "rule are float64.",
               *(["The index sums (over vectors, element-wise data) compute in float64."]
                 if p.vector_sums else [])] if self.f32 else []
        head = preamble([
            "Value, gradient, Hessian and Hessian-vector product of a loss, compiled with Numba.",
            "",
            "x is a float64 vector of the parameters in PARAMS order; data columns are passed",
            "positionally in DATA order, then an optional int64 array of sample indices (idx,",
            "each in [0, N): checked, ValueError otherwise).",
            *(["After PARAMS, x holds the n entries of each vector of VECTORS in turn."]
              if p.vectors else []), *f32,
            "Results are written into the output array given (g, out, H), which must not overlap",
            "x, v or a data column (checked, ValueError otherwise). Arithmetic follows IEEE 754",
            "(error_model='numpy'): a division by zero gives inf or nan, it does not raise."], [
            ("PARAMS", tuple(p.param_names)),
            *([("VECTORS", tuple(v.name for v in p.vectors))] if p.vectors else []),
            ("DATA", (*(c.name for c in p.columns), *(e.name for e in p.elements))),
            ("KINK_POLICY", self.der.policy.describe()), ("ANALYTIC", self.analytic),
            *([("DTYPE", "float32")] if self.f32 else [])], self.opts)
        funcs = self.functions()  # printing them records the logsumexp arities used
        lse = sorted(self.real.lse_arities | self.cplx.lse_arities | self.sample_pr.lse_arities)
        # float32 literals in the helpers: they return float32 for float32 (and still float64
        # for the outer chain rule's float64 arguments: Numba unifies the two to float64)
        return assemble(head, funcs, [lse_helper(a, c) for a in lse for c in (False, True)],
                        adapt=f32_helpers if self.f32 else None)

    def functions(self) -> list[str]:
        if self.prob.vector_sums:
            return self.with_vectors()
        if self.K == 0:
            return self.param_only()
        return self.with_data()

    # -- parameter-only losses -------------------------------------------------------------
    def param_only(self) -> list[str]:
        o, n = self.der.outer, self.n
        out = []
        F = o.outputs["F"][0]
        out.append(fn("value(x)", "The loss at x.", [
            self.check_x(), *self.load_params(), *self.assigns(o, ("F",), self.real),
            f"return {self.p(F)}"]))
        body = [self.check_x(), self.check_x("g"), *self.no_alias("g", "x"), *self.load_params(),
                *self.assigns(o, ("F", "dx"), self.real)]
        body += [f"g[{j}] = {self.p(e)}" for j, e in enumerate(o.outputs["dx"])]
        out.append(fn("value_and_grad(x, g)", "The loss at x; its gradient is written into g.",
                       [*body, f"return {self.p(F)}"]))
        out.append(fn("grad(x, g)", "Write the gradient at x into g (and return g).", [
            "value_and_grad(x, g)", "return g"]))
        body = [self.check_x(), self.check_x("v"), self.check_x("out"),
                *self.no_alias("out", "x", "v"), *self.load_params(),
                *self.load_v(), *self.assigns(o, ("hx",), self.real)]
        body += [f"out[{j}] = {self.p(e)}" for j, e in enumerate(o.outputs["hx"])]
        out.append(fn("hvp(x, v, out)", "Write the Hessian at x times v into out.",
                       [*body, "return out"]))
        out.append(hessian_fn(n, "x, H", "hvp(x, {e}, {col})"))
        if self.analytic:
            out.append(fn("value_complex(x)", "The loss at complex x (complex-step checks).", [
                *self.load_params(), *self.assigns(o, ("F",), self.cplx),
                f"return {self.p(o.outputs['F'][0], self.cplx)}"]))
        return out


def check_dtype(prob, real: str) -> None:
    """Raise unless a scalar loss can compute in ``real`` ("float64" always; "float32" for
    a loss that sums over data samples: float32 is the arithmetic of the sample loop, with
    float64 totals; without one there is nothing to run in float32. Index sums over vectors
    or element-wise data next to it compute in float64, as x and the outer chain rule do)."""
    if real not in ("float64", "float32"):
        raise ValueError(f"dtype must be 'float64' or 'float32', got {real!r}")
    if real == "float64":
        return
    if not prob.reductions:
        why = ("it has no sum over data samples (sg.mean/sg.sum of data columns): float32 "
               "applies to the per-sample arithmetic of a data loss; leave dtype unset")
    else:
        return
    raise ValueError(f"dtype='float32' is not available for this scalar loss: {why}")


def module_source(der: Derivatives, opts: CodegenOptions | None = None,
                  real: str = "float64") -> str:
    """The generated module's text: same derivatives, options and ``real`` ("float64" or
    "float32", the per-sample arithmetic: :func:`check_dtype`) give the same bytes."""
    check_dtype(der.problem, real)
    return _Gen(der, opts or CodegenOptions(), real).source()
