"""Derivatives -> the text of a standalone Python module (deterministic bytes).

The module needs only ``math``, ``cmath``, NumPy and Numba. Parameter-only losses become
straight-line functions of ``x``; losses with reductions become one loop over samples that
accumulates the value, gradient (and Hessian-vector) sums of every reduction in the same pass,
followed by the outer chain rule. Parallel variants split the samples into chunks under
``numba.prange``.

>>> import symgrad as sg
>>> from symgrad.problem import problem
>>> from symgrad.derive import derive
>>> x1, x2 = sg.params("x1 x2")
>>> text = module_source(derive(problem((x2 - x1**2)**2 + (1 - x1)**2)))
>>> "def value_and_grad(x, g):" in text
True
"""

from __future__ import annotations

import builtins
import hashlib
import keyword
import re
from dataclasses import dataclass

import sympy as sp

from .derive import Derivatives, Tmp
from .printer import ComplexPrinter, ScalarPrinter

__all__ = ["CodegenOptions", "header", "module_source"]

RESERVED = {"x", "g", "v", "out", "H", "idx", "acc", "lo", "hi", "N", "i", "j", "k", "c", "m", "n",
            "w", "z", "a", "nn", "e",
            "math", "cmath", "np", "numba", "rows", "nc", "s"}


@dataclass(frozen=True)
class CodegenOptions:
    """``fastmath`` flags for the sample loops (reassociation lets sums vectorise; NaN/Inf keep
    their meaning); ``regenerate`` is the command recorded in the header."""

    fastmath: tuple[str, ...] = ("reassoc", "contract")
    regenerate: str = "symgrad.generate(loss, path)"
    version: str = "0"


def _ident(name: str, prefix: str, taken: set) -> str:
    base = prefix + re.sub(r"[^0-9A-Za-z_]", "_", name)
    out, k = base, 1
    while out in taken:
        k += 1
        out = f"{base}_{k}"
    taken.add(out)
    return out


# -- column argument names (issue 11, names) ----------------------------------------------
#: Names the module itself uses where a column is an argument: its functions, constants and
#: Python's builtins. Names it generates by pattern (v0, r0, u0, s0, a0, *_parallel) are in
#: _GENERATED; prefixed locals (p_, d_, y_, vy_, e_) are assigned after the columns, from the
#: same ``taken`` set, so they step around a column's name.
_MODULE_NAMES = frozenset(RESERVED | set(dir(builtins)) | {
    "value", "grad", "hessian", "hvp", "value_and_grad", "value_complex",
    "PARAMS", "DATA", "KINK_POLICY", "ANALYTIC", "at_zero", "r", "u"})
_GENERATED = re.compile(r"[arsuv][0-9]+|\w+_parallel")


def _column_args(prob, taken: set) -> list[str]:
    """Argument names of the per-sample columns, then of the element-wise columns.

    Names are NFKC-normalised at declaration, so the text here is what Python will read; a name
    the module uses itself, a keyword or a private name gets a ``col_`` prefix (and a suffix if
    even that is taken). The names chosen are added to ``taken``."""
    out = []
    for nm in [c.name for c in prob.columns] + [e.name for e in prob.elements]:
        if (nm in _MODULE_NAMES or keyword.iskeyword(nm) or nm.startswith("_") or nm in taken
                or _GENERATED.fullmatch(nm) or not nm.isidentifier()):
            nm = _ident(nm, "col_", taken)
        taken.add(nm)
        out.append(nm)
    return out


class _Text:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, line: str = "", depth: int = 0) -> None:
        self.lines.append("    " * depth + line if line else "")

    def block(self, lines, depth: int) -> None:
        for ln in lines:
            self(ln, depth)


class _Gen:
    def __init__(self, der: Derivatives, opts: CodegenOptions) -> None:
        self.der, self.opts = der, opts
        p = der.problem
        self.prob = p
        self.n = len(p.params)
        self.K = len(p.reductions)
        taken = set(RESERVED)
        args = _column_args(p, taken)
        names: dict = {}
        for s in p.params:
            names[s] = _ident(s.name, "p_", taken)
        for s in p.data_symbols:
            names[s] = _ident(s.name, "d_", taken)
        for j, s in enumerate(der.v):
            names[s] = f"v{j}"
        for k, r in enumerate(p.reductions):
            names[r.symbol] = f"r{k}"
        for k, s in enumerate(der.u):
            names[s] = f"u{k}"
        self.names = _TmpNames(names)
        self.M = len(p.vectors)
        self.cols, self.ecols = args[:len(p.columns)], args[len(p.columns):]
        self.col_of = dict(zip([c.name for c in p.columns], self.cols, strict=True))
        self.ecol_of = dict(zip(p.elements, self.ecols, strict=True))
        self.real = ScalarPrinter(self.names)
        self.cplx = ComplexPrinter(self.names)
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
                names[y] = _ident(y.name, "", taken)
                names[vy] = _ident(vy.name, "", taken)
            for e, _, _ in vt.elements:
                names[e] = _ident(e.name, "", taken)
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

    def load_params(self) -> list[str]:
        return [f"{self.names[s]} = x[{j}]" for j, s in enumerate(self.prob.params)]

    def load_v(self) -> list[str]:
        return [f"v{j} = v[{j}]" for j in range(self.n)]

    def load_data(self) -> list[str]:
        out = []
        for s in self.prob.data_symbols:
            col = self.col_of[s.column]
            # float32 columns are promoted before any arithmetic (numba keeps float(f32) as f32)
            out.append(f"{self.names[s]} = np.float64({col}[i])" if s.component is None
                       else f"{self.names[s]} = np.float64({col}[i, {s.component}])")
        return out

    def check_x(self, arg: str = "x") -> str:
        names = ", ".join(self.prob.param_names[:8]) + (", ..." if self.n > 8 else "")
        what = "out (the gradient array g)" if arg == "g" else arg
        return (f'if {arg}.shape[0] != {self.n}:\n'
                f'    raise ValueError("{what} must have {self.n} entries ({_esc(names)})")')

    def no_alias(self, out: str, *ins: str) -> list[str]:
        """Refuse an output array that overlaps an input (the code writes it before reading
        them all): ``out`` is the argument name, ``ins`` the inputs it must not overlap."""
        what = "out (the gradient array g)" if out == "g" else "out (the Hessian H)" \
            if out == "H" else "out"
        return [f'if _overlap({out}, {a}):\n    raise ValueError("{what} overlaps {a} in '
                'memory: pass a separate output array")' for a in ins]

    def p(self, e, printer=None) -> str:
        e = sp.sympify(e)
        return (printer or self.real).doprint(e.xreplace(self.sub) if self.sub else e)

    # -- module ---------------------------------------------------------------------------
    def source(self) -> str:
        body = self.body()
        digest = hashlib.sha256(body.encode()).hexdigest()[:16]
        return self.header(digest) + body

    def header(self, digest: str) -> str:
        return header(self.prob, self.der.policy, self.opts, digest)

    def body(self) -> str:
        T = _Text()
        p = self.prob
        T('"""Value, gradient, Hessian and Hessian-vector product of a loss, compiled with Numba.')
        T("")
        T("x is a float64 vector of the parameters in PARAMS order; data columns are passed")
        T("positionally in DATA order, then an optional int64 array of sample indices (idx,")
        T("each in [0, N): checked, ValueError otherwise).")
        T("Results are written into the output array given (g, out, H), which must not overlap")
        T("x, v or a data column (checked, ValueError otherwise). Arithmetic follows IEEE 754")
        T("(error_model='numpy'): a division by zero gives inf or nan, it does not raise.")
        T('"""')
        T()
        T("import cmath  # noqa: F401")
        T("import math")
        T()
        T("import numba")
        T("import numpy as np")
        T()
        T(f"PARAMS = {tuple(p.param_names)!r}")
        T(f"DATA = {(*(c.name for c in p.columns), *(e.name for e in p.elements))!r}")
        T(f"KINK_POLICY = {self.der.policy.describe()!r}")
        T(f"ANALYTIC = {p.analytic!r}")
        T(f"_FASTMATH = {set(self.opts.fastmath) if self.opts.fastmath else False!r}".replace(
            "{'contract', 'reassoc'}", "{'reassoc', 'contract'}"))
        T()
        T.block(HELPERS.strip("\n").splitlines(), 0)
        if p.analytic:
            T()
            T.block(COMPLEX_HELPERS.strip("\n").splitlines(), 0)
        funcs = self.functions()
        lse = sorted(self.real.lse_arities | self.cplx.lse_arities)
        for a in lse:
            T()
            T.block(_lse_helper(a, False).splitlines(), 0)
            if p.analytic:
                T()
                T.block(_lse_helper(a, True).splitlines(), 0)
        for f in funcs:
            T()
            T()
            T.block(f.splitlines(), 0)
        return "\n".join(T.lines).rstrip() + "\n"

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
        out.append(_fn("value(x)", "The loss at x.", [
            self.check_x(), *self.load_params(), *self.assigns(o, ("F",), self.real),
            f"return {self.p(F)}"]))
        body = [self.check_x(), self.check_x("g"), *self.no_alias("g", "x"), *self.load_params(),
                *self.assigns(o, ("F", "dx"), self.real)]
        body += [f"g[{j}] = {self.p(e)}" for j, e in enumerate(o.outputs["dx"])]
        out.append(_fn("value_and_grad(x, g)", "The loss at x; its gradient is written into g.",
                       [*body, f"return {self.p(F)}"]))
        out.append(_fn("grad(x, g)", "Write the gradient at x into g (and return g).", [
            "value_and_grad(x, g)", "return g"]))
        body = [self.check_x(), self.check_x("v"), self.check_x("out"),
                *self.no_alias("out", "x", "v"), *self.load_params(),
                *self.load_v(), *self.assigns(o, ("hx",), self.real)]
        body += [f"out[{j}] = {self.p(e)}" for j, e in enumerate(o.outputs["hx"])]
        out.append(_fn("hvp(x, v, out)", "Write the Hessian at x times v into out.",
                       [*body, "return out"]))
        out.append(_hessian_fn(n, "x, H", "hvp(x, e, H[:, j])"))
        if self.prob.analytic:
            out.append(_fn("value_complex(x)", "The loss at complex x (complex-step checks).", [
                *self.load_params(), *self.assigns(o, ("F",), self.cplx),
                f"return {self.p(o.outputs['F'][0], self.cplx)}"]))
        return out

    # -- losses with reductions over samples -------------------------------------------------
    def sample_fns(self, cplx_ok: bool) -> list[str]:
        K, n = self.K, self.n
        cols = ", ".join(self.cols)
        out = []
        modes = {"e": ("e",), "g": ("e", "g"), "h": ("e", "g", "hv")}
        sizes = {"e": K, "g": K + K * n, "h": K + 2 * K * n}
        for mode, outs in modes.items():
            for cplx in ((False, True) if mode == "e" and cplx_ok else (False,)):
                out.append(self.acc_fn(mode, outs, cplx))
            out.append(self.par_fn(mode, sizes[mode], cols))
        if cplx_ok:
            out.append(self.par_fn("e", K, cols, cplx=True))
        out.append(_fn(f"_n_samples({cols}, idx)",
                       "Number of samples used; checks the columns agree and idx is in range.", [
                           f"N = {self.cols[0]}.shape[0]",
                           *[f'if {c}.shape[0] != N:\n    raise ValueError('
                             f'"data column {_esc(c)} has a different number of samples")'
                             for c in self.cols[1:]],
                           "if idx is None:", "    return N",
                           "if idx.shape[0] == 0:",
                           '    raise ValueError("batch (idx) selects no samples")',
                           "if isinstance(idx[0], bool):  # resolved when compiled",
                           '    raise TypeError("batch (idx) must hold integer sample indices, '
                           'not a boolean mask: pass np.flatnonzero(mask)")',
                           "lo = idx[0]", "hi = idx[0]",
                           "for k in range(1, idx.shape[0]):  # one pass: min and max",
                           "    lo = min(lo, idx[k])", "    hi = max(hi, idx[k])",
                           "if lo < 0 or hi >= N:",
                           '    raise ValueError("batch (idx): sample index " + str(lo if lo < 0 '
                           'else hi) + " is outside [0, " + str(N) + "), the length of the data '
                           'columns")',
                           "return idx.shape[0]"], jit=_JIT))
        return out

    def with_data(self) -> list[str]:
        K, n = self.K, self.n
        cols = ", ".join(self.cols)
        sizes = {"e": K, "g": K + K * n, "h": K + 2 * K * n}
        out = self.sample_fns(self.prob.analytic)
        out.extend(self.finish_fns())
        for par in (False, True):
            sfx, drv = ("_parallel", "_par_") if par else ("", "_acc_")
            tail = f"{cols}, idx=None"
            def run(m: str, a: str, drv: str = drv) -> str:
                rng = "N, acc)" if drv == "_par_" else "0, N, acc)"
                return f"{drv}{m}({a}, {cols}, idx, {rng}"

            out.append(_fn(f"value{sfx}(x, {tail})", "The loss at x.", [
                self.check_x(), f"N = _n_samples({cols}, idx)",
                f"acc = np.zeros({sizes['e']})", run("e", "x"),
                "return _finish_e(x, acc, N)"]))
            out.append(_fn(f"value_and_grad{sfx}(x, g, {tail})",
                           "The loss at x; its gradient is written into g.", [
                               self.check_x(), self.check_x("g"), *self.no_alias("g", "x"),
                               f"N = _n_samples({cols}, idx)",
                               f"acc = np.zeros({sizes['g']})", run("g", "x"),
                               "return _finish_g(x, acc, N, g)"]))
            out.append(_fn(f"grad{sfx}(x, g, {tail})", "Write the gradient at x into g.", [
                f"value_and_grad{sfx}(x, g, {cols}, idx)", "return g"]))
            out.append(_fn(f"hvp{sfx}(x, v, out, {tail})",
                           "Write the Hessian at x times v into out.", [
                               self.check_x(), self.check_x("v"), self.check_x("out"),
                               *self.no_alias("out", "x", "v"), f"N = _n_samples({cols}, idx)",
                               f"acc = np.zeros({sizes['h']})", run("h", "x, v"),
                               "return _finish_h(x, v, acc, N, out)"]))
            out.append(_hessian_fn(n, f"x, H, {tail}", f"hvp{sfx}(x, e, H[:, j], {cols}, idx)",
                                   f"hessian{sfx}"))
        if self.prob.analytic:
            out.append(_fn(f"value_complex(x, {cols}, idx=None)",
                           "The loss at complex x (complex-step checks).", [
                               f"N = _n_samples({cols}, idx)",
                               f"acc = np.zeros({K}, dtype=np.complex128)",
                               f"_acc_e_c(x, {cols}, idx, 0, N, acc)",
                               "return _finish_e_c(x, acc, N)"]))
        return out

    def acc_fn(self, mode: str, outs: tuple[str, ...], cplx: bool) -> str:
        s = self.der.sample
        pr = self.cplx if cplx else self.real
        zero = "0j" if cplx else "0.0"
        sums = [o for name in outs for o in s.outputs[name]]
        lines = [*self.load_params()]
        args = "x, v" if mode == "h" else "x"
        if mode == "h":
            lines += self.load_v()
        lines += [f"a{j} = {zero}" for j in range(len(sums))]
        # Over a range, read views starting at lo so that i starts at a literal 0: Numba then
        # knows i >= 0, drops its negative-index wraparound, and the loop vectorises.
        lines.append("if idx is None:")
        lines += [f"    {c} = {c}[lo:hi]" for c in self.cols]
        lines.append("for k in range(hi - lo):")
        lines.append("    i = k if idx is None else idx[lo + k]")
        lines += ["    " + ln for ln in self.load_data()]
        lines += ["    " + ln for ln in self.assigns(s, outs, pr)]
        lines += [f"    a{j} += {self.p(e, pr)}" for j, e in enumerate(sums)]
        lines += [f"acc[{j}] += a{j}" for j in range(len(sums))]
        sfx = "_c" if cplx else ""
        name = f"_acc_{mode}{sfx}({args}, {', '.join(self.cols)}, idx, lo, hi, acc)"
        doc = {"e": "Add each reduction's sum over samples lo..hi-1 into acc.",
               "g": "Add the sums of each reduction and its gradient into acc (one pass).",
               "h": "Add the sums of each reduction's Hessian times v into acc."}[mode]
        return _fn(name, doc, lines, jit=_JIT[:-1] + ", fastmath=_FASTMATH)")

    def par_fn(self, mode: str, size: int, cols: str, cplx: bool = False) -> str:
        args = "x, v" if mode == "h" else "x"
        sfx = "_c" if cplx else ""
        dtype = ", dtype=np.complex128" if cplx else ""
        return _fn(f"_par_{mode}{sfx}({args}, {cols}, idx, N, acc)",
                   "Parallel version of the sample pass: chunks under prange, then a sum.", [
                       "nc = min(max(N // 2048, 1), 64)",
                       f"rows = np.zeros((nc, {size}){dtype})",
                       "for c in numba.prange(nc):",
                       f"    _acc_{mode}{sfx}({args}, {cols}, idx, c * N // nc, (c + 1) * N // nc, "
                       "rows[c])",
                       "for c in range(nc):",
                       f"    for m in range({size}):",
                       "        acc[m] += rows[c, m]"],
                   jit=_JIT[:-1] + ", parallel=True)")

    def load_r(self, pr=None) -> list[str]:
        out = []
        for k, r in enumerate(self.prob.reductions):
            out.append(f"r{k} = acc[{k}] / N" if r.kind == "mean" else f"r{k} = acc[{k}]")
        return out

    def scale(self, k: int) -> str:
        return "1.0 / N" if self.prob.reductions[k].kind == "mean" else "1.0"

    # The outer chain rule over the reductions' sums in acc (layout: K values, K x n gradient
    # sums, then K x n Hessian-vector sums). Used after the outer program's assignments.
    def chain_grad(self) -> list[str]:
        """g += sum_k dF/dR_k * dR_k/dx."""
        K, n, dR = self.K, self.n, self.der.outer.outputs["dR"]
        out = []
        for k in range(K):
            out += [f"w = ({self.p(dR[k])}) * ({self.scale(k)})", f"for m in range({n}):",
                    f"    g[m] += w * acc[{K + k * n} + m]"]
        return out

    def jv(self) -> list[str]:
        """u_k = dR_k/dx . v, the reductions' directional derivatives."""
        K, n = self.K, self.n
        out = []
        for k in range(K):
            out += [f"u{k} = 0.0", f"for m in range({n}):",
                    f"    u{k} += acc[{K + k * n} + m] * v[m]", f"u{k} *= {self.scale(k)}"]
        return out

    def chain_hvp(self) -> list[str]:
        """out += sum_k (hR_k * dR_k/dx + dF/dR_k * H_k v)."""
        K, n, o = self.K, self.n, self.der.outer.outputs
        out = []
        for k in range(K):
            out += [f"w = ({self.p(o['hR'][k])}) * ({self.scale(k)})",
                    f"z = ({self.p(o['dR'][k])}) * ({self.scale(k)})", f"for m in range({n}):",
                    f"    out[m] += w * acc[{K + k * n} + m] + z * acc[{K + K * n + k * n} + m]"]
        return out

    def finish_fns(self) -> list[str]:
        o = self.der.outer
        F = o.outputs["F"][0]
        out = [_fn("_finish_e(x, acc, N)", "The outer loss from the reduction sums.", [
            *self.load_params(), *self.load_r(), *self.assigns(o, ("F",), self.real),
            f"return {self.p(F)}"], jit=_JIT)]
        if self.prob.analytic:
            out.append(_fn("_finish_e_c(x, acc, N)", "Complex variant of _finish_e.", [
                *self.load_params(), *self.load_r(), *self.assigns(o, ("F",), self.cplx),
                f"return {self.p(F, self.cplx)}"], jit=_JIT))
        lines = [*self.load_params(), *self.load_r(),
                 *self.assigns(o, ("F", "dx", "dR"), self.real)]
        lines += [f"g[{j}] = {self.p(e)}" for j, e in enumerate(o.outputs["dx"])]
        lines += self.chain_grad()
        lines.append(f"return {self.p(F)}")
        out.append(_fn("_finish_g(x, acc, N, g)",
                       "Outer chain rule: g = dF/dx + sum_k dF/dR_k * dR_k/dx.", lines,
                       jit=_JIT))
        lines = [*self.load_params(), *self.load_v(), *self.load_r(), *self.jv()]
        lines += self.assigns(o, ("dR", "hx", "hR"), self.real)
        lines += [f"out[{j}] = {self.p(e)}" for j, e in enumerate(o.outputs["hx"])]
        lines += self.chain_hvp()
        lines.append("return out")
        out.append(_fn("_finish_h(x, v, acc, N, out)",
                       "Outer Hessian-vector product: (F_xx v + F_xR u) + J^T (F_Rx v + F_RR u)"
                       " + sum_k F_R_k H_k v, with u = J v.", lines,
                       jit=_JIT))
        return out


    # -- indexed sums over parameter vectors ------------------------------------------------
    def vec_load(self, vt, arr: str, names_of) -> list[str]:
        return [f"{self.names[names_of(y, vy)]} = {arr}[{self.loc_index(vec, off)}]"
                for (y, vec, off), vy in zip(vt.locals, vt.vy, strict=True)]

    def loc_index(self, vec, off: int) -> str:
        start = [str(self.ns)] if self.ns else []
        if self.vec_pos[vec]:
            start.append(f"{self.vec_pos[vec]} * n")
        return " + ".join([*start, "i"]) + _off(off)

    def vec_fns(self, j: int) -> list[str]:
        vs, vt = self.prob.vector_sums[j], self.der.vsums[j]
        prog = vt.program
        idx = _esc(str(vs.index))
        rng = [f"lo = int({self.p(vs.lo)})", f"hi = int({self.p(vs.hi)})"]
        if vt.locals:
            offs = [off for _, _, off in vt.locals]
            rng += [f"if hi > lo and (lo + {min(offs)} < 0 or hi - 1 + {max(offs)} >= n):",
                    f'    raise ValueError("sum {j}: index {idx} reads outside the parameter '
                    'vector")']
        for el, col in self.ecol_of.items():
            offs = [off for _, c, off in vt.elements if c == el]
            if offs:
                rng += [f"if hi > lo and (lo + {min(offs)} < 0 or "
                        f"hi - 1 + {max(offs)} >= {col}.shape[0]):",
                        f'    raise ValueError("sum {j}: index {idx} reads outside data column '
                        f'{_esc(el.name)}: pass a longer array or shorten the index range")']
        eload = [f"{self.names[e]} = np.float64({self.ecol_of[c]}[i{_off(off)}])"
                 for e, c, off in vt.elements]
        ys = [eload + self.vec_load(vt, "x", lambda y, vy: y)]
        vys = [self.vec_load(vt, "v", lambda y, vy: vy)]
        ns = self.ns
        et = "".join(f", {c}" for c in self.ecols)
        # Plain (no fastmath): the gradient scatters into g[i + k], and reassociation does not
        # vectorise such loops; measured, the plain loop is the faster one.
        jit = _JIT
        out = []
        # value (and its complex variant for complex-step checks)
        variants = [("", self.real, "0.0", f"Sum {j} over its index range.")]
        if self.prob.analytic:
            variants.append(("_c", self.cplx, "0j", f"Complex variant of _vs{j}_value."))
        for sfx, pr, zero, doc in variants:
            body = [*self.load_params(), *rng, f"s = {zero}", "for i in range(lo, hi):",
                    *["    " + ln for ln in ys[0]],
                    *["    " + ln for ln in self.assigns(prog, ("t",), pr)],
                    f"    s += {self.p(prog.outputs['t'][0], pr)}", "return s"]
            out.append(_fn(f"_vs{j}_value{sfx}(x, n{et})", doc, body, jit))
        # gradient scatter
        body = [*self.load_params(), *rng, "s = 0.0", *[f"a{k} = 0.0" for k in range(ns)],
                "for i in range(lo, hi):", *["    " + ln for ln in ys[0]],
                *["    " + ln for ln in self.assigns(prog, ("t", "gy", "gx"), self.real)],
                f"    s += {self.p(prog.outputs['t'][0])}"]
        for (_, vec, off), gy in zip(vt.locals, prog.outputs["gy"], strict=True):
            body.append(f"    g[{self.loc_index(vec, off)}] += w * ({self.p(gy)})")
        body += [f"    a{k} += {self.p(e)}" for k, e in enumerate(prog.outputs["gx"])]
        body += [f"g[{k}] += w * a{k}" for k in range(ns)] + ["return s"]
        out.append(_fn(f"_vs{j}_grad(x, n, w, g{et})",
                       f"Sum {j}; adds w times its gradient into g (scattered per element).",
                       body, jit))
        # directional derivative
        body = [*self.load_params(), *self.load_v(), *rng, "s = 0.0", "u = 0.0",
                "for i in range(lo, hi):", *["    " + ln for ln in ys[0] + vys[0]],
                *["    " + ln for ln in self.assigns(prog, ("t", "dir"), self.real)],
                f"    s += {self.p(prog.outputs['t'][0])}",
                f"    u += {self.p(prog.outputs['dir'][0])}", "return s, u"]
        out.append(_fn(f"_vs{j}_dir(x, v, n{et})", f"Sum {j} and its derivative along v.", body,
                       jit))
        # Hessian-vector scatter
        body = [*self.load_params(), *self.load_v(), *rng, *[f"a{k} = 0.0" for k in range(ns)],
                "for i in range(lo, hi):", *["    " + ln for ln in ys[0] + vys[0]],
                *["    " + ln for ln in self.assigns(prog, ("gy", "gx", "hy", "hx"), self.real)]]
        for (_, vec, off), gy, hy in zip(vt.locals, prog.outputs["gy"], prog.outputs["hy"],
                                         strict=True):
            body.append(f"    out[{self.loc_index(vec, off)}] += "
                        f"w * ({self.p(hy)}) + z * ({self.p(gy)})")
        body += [f"    a{k} += w * ({self.p(h)}) + z * ({self.p(g)})"
                 for k, (g, h) in enumerate(zip(prog.outputs["gx"], prog.outputs["hx"],
                                                strict=True))]
        body += [f"out[{k}] += a{k}" for k in range(ns)]
        out.append(_fn(f"_vs{j}_hvp(x, v, n, w, z, out{et})",
                       f"Adds w * (Hessian of sum {j}) v + z * (its gradient) into out.",
                       body, jit))
        return out

    def with_vectors(self) -> list[str]:
        p, o, K, n = self.prob, self.der.outer, self.K, self.n
        m = len(p.vector_sums)
        cols = ", ".join(self.cols)
        et = "".join(f", {c}" for c in self.ecols)
        tail = (f", {cols}" if K else "") + et + (", idx=None" if K else "")
        call_tail = (f", {cols}" if K else "") + et + (", idx" if K else "")
        out: list[str] = []
        if K:
            out.extend(self.sample_fns(p.analytic))
        for j in range(m):
            out.extend(self.vec_fns(j))
        vecs = ", ".join(v.name for v in p.vectors)
        scal = ", ".join(p.param_names) or "no scalars"
        if self.M:
            out.append(_fn("_n_vec(x)", "The vectors' length n from the length of x.", [
                f"r = x.shape[0] - {self.ns}",
                f"if r < {self.M} or r % {self.M} != 0:",
                f'    raise ValueError("x must hold the scalars ({_esc(scal)}) then the vector(s) '
                f'({_esc(vecs)}) of one common length n >= 1")',
                f"return r // {self.M}"]))
        else:  # index sums over data columns only: x holds the scalars
            out.append(_fn("_n_vec(x)", "No parameter vectors: checks x, returns n = 0.", [
                self.check_x(), "return 0"]))
        sizes = {"e": K, "g": K + K * n, "h": K + 2 * K * n}

        def samples(mode: str, args: str = "x") -> list[str]:
            if not K:
                return []
            return [f"N = _n_samples({cols}, idx)", f"acc = np.zeros({sizes[mode]})",
                    f"_acc_{mode}({args}, {cols}, idx, 0, N, acc)", *self.load_r()]

        S = [f"s{j}" for j in range(m)]
        # value
        body = ["n = _n_vec(x)", *samples("e"),
                *[f"{S[j]} = _vs{j}_value(x, n{et})" for j in range(m)],
                *self.load_params(), *self.assigns(o, ("F",), self.real),
                f"return {self.p(o.outputs['F'][0])}"]
        out.append(_fn(f"value(x{tail})", "The loss at x.", body))
        # value and gradient
        dS = o.outputs["dR"][K:]
        s_syms = {vs.symbol for vs in p.vector_sums}
        two_pass = any(_depends(o, d, s_syms) for d in dS)
        body = ["n = _n_vec(x)", "if g.shape[0] != x.shape[0]:",
                '    raise ValueError("out (the gradient array g) must have the length of x")',
                *self.no_alias("g", "x", *self.cols, *self.ecols), "g[:] = 0.0",
                *samples("g"), *self.load_params()]
        if two_pass:
            body += [f"{S[j]} = _vs{j}_value(x, n{et})" for j in range(m)]
        body += self.assigns(o, ("dR",), self.real)
        body += [f"{S[j]} = _vs{j}_grad(x, n, {self.p(dS[j])}, g{et})" for j in range(m)]
        body += self.assigns(o, ("F", "dx", "dR"), self.real, fresh=False)
        body += [f"g[{k}] += {self.p(e)}" for k, e in enumerate(o.outputs["dx"])]
        body += self.chain_grad()
        body.append(f"return {self.p(o.outputs['F'][0])}")
        out.append(_fn(f"value_and_grad(x, g{tail})",
                       "The loss at x; its gradient is written into g.", body))
        out.append(_fn(f"grad(x, g{tail})", "Write the gradient at x into g.", [
            f"value_and_grad(x, g{call_tail})", "return g"]))
        # Hessian-vector product
        body = ["n = _n_vec(x)", "if v.shape[0] != x.shape[0] or out.shape[0] != x.shape[0]:",
                '    raise ValueError("v and out must have the length of x")',
                *self.no_alias("out", "x", "v", *self.cols, *self.ecols), "out[:] = 0.0",
                *samples("h", "x, v"), *self.jv()]
        body += [f"{S[j]}, u{K + j} = _vs{j}_dir(x, v, n{et})" for j in range(m)]
        body += [*self.load_params(), *self.load_v(),
                 *self.assigns(o, ("dR", "hx", "hR"), self.real)]
        body += [f"out[{k}] += {self.p(e)}" for k, e in enumerate(o.outputs["hx"])]
        body += self.chain_hvp()
        body += [f"_vs{j}_hvp(x, v, n, {self.p(o.outputs['dR'][K + j])}, "
                 f"{self.p(o.outputs['hR'][K + j])}, out{et})" for j in range(m)]
        body.append("return out")
        out.append(_fn(f"hvp(x, v, out{tail})", "Write the Hessian at x times v into out.", body))
        out.append(_hessian_fn(None, f"x, H{tail}", f"hvp(x, e, H[:, j]{call_tail})"))
        if p.analytic:
            body = ["n = _n_vec(x)"]
            if K:
                body += [f"N = _n_samples({cols}, idx)",
                         f"acc = np.zeros({K}, dtype=np.complex128)",
                         f"_acc_e_c(x, {cols}, idx, 0, N, acc)", *self.load_r()]
            body += [f"{S[j]} = _vs{j}_value_c(x, n{et})" for j in range(m)]
            body += [*self.load_params(), *self.assigns(o, ("F",), self.cplx),
                     f"return {self.p(o.outputs['F'][0], self.cplx)}"]
            out.append(_fn(f"value_complex(x{tail})",
                           "The loss at complex x (complex-step checks).", body))
        return out


def header(prob, policy, opts: CodegenOptions, digest: str) -> str:
    """The comment header of a module: what it computes, in which order, and the hash of its body
    (the cache recomputes it to verify an entry without deriving again)."""
    p = prob
    cols = ", ".join([*(f"{c.name}[N]" if c.width is None else f"{c.name}[N, {c.width}]"
                        for c in p.columns),
                      *(f"{e.name}[:] (element-wise)" for e in p.elements)]) or "none"
    order = [*p.param_names, *(f"{v.name}[:]" for v in p.vectors)]
    expr = _esc(" ".join(str(p.expr).split()))
    expr_lines = [expr[i:i + 94] for i in range(0, len(expr), 94)] or [""]
    lines = [
        "# Generated by symgrad, do not edit.",
        f"# symgrad version: {opts.version}",
        "# loss:",
        *[f"#   {ln}" for ln in expr_lines],
        f"# parameters (order of x): {_esc(', '.join(order))}",
        f"# data columns: {_esc(cols)}",
        f"# kink policy: {policy.describe()}",
        f"# content hash: {digest}",
        f"# regenerate with: {_esc(opts.regenerate)}",
    ]
    return "\n".join(lines) + "\n"


def _off(off: int) -> str:
    return f" + {off}" if off > 0 else f" - {-off}" if off < 0 else ""


def _depends(prog, out, syms: set) -> bool:
    """Whether output ``out`` of ``prog`` reads any of ``syms`` (directly or via temporaries)."""
    if not isinstance(out, Tmp):
        return bool(sp.sympify(out).free_symbols & syms)
    return any(e.free_symbols & syms for _, e in prog.schedule_of(out))


class _TmpNames(dict):
    def __missing__(self, key):
        if isinstance(key, Tmp):
            return key.name
        raise KeyError(key)

    def __contains__(self, key):
        return isinstance(key, Tmp) or dict.__contains__(self, key)


def _esc(s: str) -> str:
    """Safe inside a double-quoted literal or a comment: no quotes, backslashes or newlines."""
    s = s.replace('"', "'")
    return s.encode("unicode_escape").decode("ascii")


_JIT = "@numba.njit(cache=True, error_model='numpy')"


def _fn(sig: str, doc: str, lines: list[str], jit: str = _JIT) -> str:
    body = []
    for ln in lines:
        body.extend("    " + part for part in ln.split("\n"))
    return "\n".join([jit, f"def {sig}:", f'    """{doc}"""', *body])


def _hessian_fn(n: int | None, args: str, call: str, name: str = "hessian") -> str:
    """Hessian column by column from HVPs, symmetrised; ``n=None``: the size is x's length."""
    size = "nn" if n is None else str(n)
    doc = "Write the (symmetrised) Hessian at x into H, column by column."
    return _fn(f"{name}({args})", doc, [
        *(["nn = x.shape[0]"] if n is None else []),
        f"if H.shape[0] != {size} or H.shape[1] != {size}:",
        '    raise ValueError("H must be square with the length of x")' if n is None else
        f'    raise ValueError("H must have shape ({n}, {n})")',
        "if _overlap(H, x):",
        '    raise ValueError("out (the Hessian H) overlaps x in memory: pass a separate output '
        'array")',
        f"e = np.zeros({size})",
        f"for j in range({size}):",
        "    e[j] = 1.0",
        f"    {call}",
        "    e[j] = 0.0",
        f"for j in range({size}):",
        f"    for k in range(j + 1, {size}):",
        "        m = 0.5 * (H[j, k] + H[k, j])",
        "        H[j, k] = m",
        "        H[k, j] = m",
        "return H"])


def _lse_helper(arity: int, cplx: bool) -> str:
    a = [f"a{j}" for j in range(arity)]
    if cplx:
        return "\n".join([
            "@numba.njit(cache=True, error_model='numpy')",
            f"def _logsumexp{arity}_c({', '.join(a)}):",
            f"    m = max({', '.join(x + '.real' for x in a)})",
            "    return m + cmath.log(" + " + ".join(f"cmath.exp({x} - m)" for x in a) + ")"])
    m = a[0]
    for x in a[1:]:
        m = f"max({m}, {x})"
    return "\n".join([
        "@numba.njit(cache=True, error_model='numpy')",
        f"def _logsumexp{arity}({', '.join(a)}):",
        f"    m = {m}",
        "    if math.isinf(m):",
        "        return m",
        "    return m + math.log(" + " + ".join(f"math.exp({x} - m)" for x in a) + ")"])


HELPERS = '''
@numba.njit(cache=True, error_model='numpy')
def _span(a):
    lo = a.ctypes.data
    hi = lo
    for d in range(a.ndim):
        ext = (a.shape[d] - 1) * a.strides[d]
        if ext < 0:
            lo += ext
        else:
            hi += ext
    return lo, hi + a.itemsize


@numba.njit(cache=True, error_model='numpy')
def _overlap(a, b):
    # whether the memory spans of a and b overlap (conservative, as np.may_share_memory)
    if a.size == 0 or b.size == 0:
        return False
    a0, a1 = _span(a)
    b0, b1 = _span(b)
    return a0 < b1 and b0 < a1


@numba.njit(cache=True, error_model='numpy')
def _heaviside(z, at_zero):
    if z > 0.0:
        return 1.0
    if z < 0.0:
        return 0.0
    return at_zero if z == 0.0 else z


@numba.njit(cache=True, error_model='numpy')
def _sign(z):
    if z > 0.0:
        return 1.0
    if z < 0.0:
        return -1.0
    return z


@numba.njit(cache=True, error_model='numpy')
def _relu(z):
    return z if not z < 0.0 else 0.0


@numba.njit(cache=True, error_model='numpy')
def _floor(z):
    return np.floor(z)


@numba.njit(cache=True, error_model='numpy')
def _ceil(z):
    return np.ceil(z)


@numba.njit(cache=True, error_model='numpy')
def _sigmoid(z):
    if z >= 0.0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


@numba.njit(cache=True, error_model='numpy')
def _softplus(z):
    return max(z, 0.0) + math.log1p(math.exp(-abs(z))) if z == z else z
'''

COMPLEX_HELPERS = '''
@numba.njit(cache=True, error_model='numpy')
def _span(a):
    lo = a.ctypes.data
    hi = lo
    for d in range(a.ndim):
        ext = (a.shape[d] - 1) * a.strides[d]
        if ext < 0:
            lo += ext
        else:
            hi += ext
    return lo, hi + a.itemsize


@numba.njit(cache=True, error_model='numpy')
def _overlap(a, b):
    # whether the memory spans of a and b overlap (conservative, as np.may_share_memory)
    if a.size == 0 or b.size == 0:
        return False
    a0, a1 = _span(a)
    b0, b1 = _span(b)
    return a0 < b1 and b0 < a1


@numba.njit(cache=True, error_model='numpy')
def _ipow_c(z, k):
    r = z * 0.0 + 1.0
    b = z
    m = k if k >= 0 else -k
    while m:
        if m & 1:
            r = r * b
        b = b * b
        m >>= 1
    return r if k >= 0 else 1.0 / r


@numba.njit(cache=True, error_model='numpy')
def _sigmoid_c(z):
    if z.real >= 0.0:
        return 1.0 / (1.0 + cmath.exp(-z))
    e = cmath.exp(z)
    return e / (1.0 + e)


@numba.njit(cache=True, error_model='numpy')
def _softplus_c(z):
    if z.real > 0.0:
        return z + cmath.log(1.0 + cmath.exp(-z))
    return cmath.log(1.0 + cmath.exp(z))


@numba.njit(cache=True, error_model='numpy')
def _log1p_c(z):
    return cmath.log(1.0 + z) if abs(z) > 1e-4 else z - z * z / 2.0 + z * z * z / 3.0


@numba.njit(cache=True, error_model='numpy')
def _expm1_c(z):
    return cmath.exp(z) - 1.0 if abs(z) > 1e-4 else z + z * z / 2.0 + z * z * z / 6.0


@numba.njit(cache=True, error_model='numpy')
def _erf_c(z):
    # erf(a + ib) to first order in b: enough for complex-step with tiny imaginary parts
    a = z.real
    return complex(math.erf(a), 2.0 / math.sqrt(math.pi) * math.exp(-a * a) * z.imag)
'''


def module_source(der: Derivatives, opts: CodegenOptions | None = None) -> str:
    """The generated module's text: same derivatives and options give the same bytes."""
    return _Gen(der, opts or CodegenOptions()).source()

