"""ResidualProblem -> exact per-sample derivatives -> the text of a standalone residual module.

One straight-line program per sample (through :class:`symgrad.ad.derive.Builder`, so the kink
policy and the common-subexpression table are the scalar path's) holds the ``m`` residuals,
their ``m x P`` Jacobian rows (reverse accumulation) and their derivatives along ``v``
(forward accumulation). Each entry (``residuals``, ``rows``, ``jvp``, ``vjp``, ``normal``) is a
serial chunk function (``_residuals_chunk``...: samples ``lo..hi-1``) and a serial driver that
cuts the samples into chunks, runs them in order and sums the partials in chunk order; with
data columns a ``*_parallel`` twin (``normal_parallel``...) runs the same chunks under
``prange``, so both give the same bits. The kernel's threaded calls compile neither twin: its
threads run the ``nogil`` chunk functions (and ``_vjp_run``/``_normal_run`` for the passes that
sum, each chunk into its own row) on runs of the same chunks
(:func:`symgrad.runtime.threads.residual_calls`), again the same bits; Dask workers make
the same calls in order on their chunks. Sizes (``N``) never appear in the text; only the formula's
own ``m`` and ``P`` do.

>>> import symgrad as sg
>>> from symgrad.ir.residual_problem import residual_problem
>>> a, b = sg.params("a b"); t, y = sg.data("t y")
>>> text = residual_source(residual_problem(a*sg.exp(-b*t) - y))
>>> "def normal(x, A, bv, js, rs, t, y):" in text, "N =" in text.split("def ")[0]
(True, False)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sympy as sp

from ...ad.derive import Builder, KinkPolicy, Program, Tmp
from ...ir.residual_problem import ResidualProblem
from .f32 import F32Printer, f32_helpers
from .printer import ScalarPrinter
from .residual_normal import BLOCK, NADD, UNROLL_MAX, NormalFns, normal_totals
from .skeleton import (
    JIT,
    RESERVED,
    CodegenOptions,
    TmpNames,
    assemble,
    chunks,
    column_args,
    esc,
    finish,
    fn,
    header,
    ident,
    jit,
    lse_helper,
    preamble,
    wrap,
)

__all__ = ["BLOCK", "ResidualProgram", "check_dtype", "derive_residuals", "residual_header",
           "residual_source"]

#: Locals and functions of the module; a column with one of these names is renamed col_<name>.
_LOCALS = {"J", "js", "rs", "b0", "b1", "A", "bv", "tot", "part", "kk", "q", "blk",
           "residuals", "rows", "jvp", "vjp", "normal", "PARAMS", "DATA", "M_PER_SAMPLE",
           "KINK_POLICY", "BLOCK", "sb", "zb", "Jb", "nr", "ka", "kb", "kr", "c0", "c1",
           "first", "residuals_parallel", "rows_parallel", "jvp_parallel", "vjp_parallel",
           "normal_parallel", "_residuals_chunk", "_rows_chunk", "_jvp_chunk", "_vjp_chunk",
           "_normal_chunk", "_vjp_run", "_normal_run", "_normal_finish", "k0", "k1"}
#: The module docstring's sentence on data columns (1-D columns only, or some (N, k) ones).
_DOC_1D = ("x is a float64 vector of the parameters in PARAMS order; data columns (1-D float64,",
           "one value per sample) follow the other arguments positionally in DATA order.")
_DOC_2D = ("x is a float64 vector of the parameters in PARAMS order; data columns (float64,",
           "one value per sample, or (N, k) with k values per sample) follow the other",
           "arguments positionally in DATA order.")
#: A float32 module's docstring lines (after the sentence on data columns).
_DOC_F32 = ("Each sample's residuals and Jacobian row are computed in float32 (DTYPE: float32",
            "data columns, x rounded to float32), widened to float64 before every product and",
            "sum over samples: x, the sums and the results are float64.")


@dataclass(frozen=True)
class ResidualProgram:
    """Outputs ``r`` (m residuals), ``J`` (m x P, row-major) and ``jv`` (J v along ``v``)."""

    problem: ResidualProblem
    policy: KinkPolicy
    v: tuple[sp.Symbol, ...]
    program: Program


def derive_residuals(prob: ResidualProblem, policy: KinkPolicy | None = None) -> ResidualProgram:
    """Residuals, their exact gradients and directional derivatives, CSE'd together."""
    policy = policy or KinkPolicy()
    xs = list(prob.params)
    v = tuple(sp.Symbol(f"v_{j}", real=True) for j in range(len(xs)))
    b = Builder(policy)
    rs = [b.node(e) for e in prob.exprs]
    J = [g for r in rs for g in b.gradient(r, xs)]
    jv = b.tangent(rs, dict(zip(xs, v, strict=True)))
    return ResidualProgram(prob, policy, v, Program(tuple(b.assigns), {
        "r": tuple(rs), "J": tuple(J), "jv": tuple(jv)}))


def residual_header(prob: ResidualProblem, policy: KinkPolicy, opts: CodegenOptions,
                    digest: str, real: str = "float64") -> str:
    """The comment header (recomputed by the cache to verify an entry without deriving); a
    float32 module (``real``) says so on a line of its own."""
    expr = esc(" ".join(str(list(prob.exprs) if prob.m > 1 else prob.exprs[0]).split()))
    cols = ", ".join(f"{c.name}[N]" if c.width is None else f"{c.name}[N, {c.width}]"
                     for c in prob.columns) or "none (parameter-only residuals)"
    return header(opts, policy, [
        f"# residuals ({prob.m} per sample, sample-major):",
        *[f"#   {ln}" for ln in wrap(expr)],
        f"# parameters (order of x): {esc(', '.join(prob.param_names))}",
        f"# data columns: {esc(cols)}",
        *([f"# dtype: {_F32_LINE}"] if real == "float32" else []),
    ], digest)


#: What a float32 module's header says of its arithmetic.
_F32_LINE = "float32 per-sample arithmetic (data, residuals, J rows), float64 sums and results"


def check_dtype(prob: ResidualProblem, real: str) -> None:
    """Raise unless residuals can compute in ``real``: float32 is the per-sample arithmetic of
    residuals over data columns (parameter-only residuals have no sample loop to run in it)."""
    if real not in ("float64", "float32"):
        raise ValueError(f"dtype must be 'float64' or 'float32', got {real!r}")
    if real == "float32" and not prob.columns:
        raise ValueError("dtype='float32' is not available for parameter-only residuals: "
                         "float32 applies to the per-sample arithmetic of residuals over data "
                         "columns; leave dtype unset")


def residual_source(prob: ResidualProblem, policy: KinkPolicy | None = None,
                    opts: CodegenOptions | None = None, real: str = "float64") -> str:
    """The module text: the same problem, policy, options and ``real`` ("float64", or
    "float32": :data:`_DOC_F32`, :func:`check_dtype`) give the same bytes."""
    check_dtype(prob, real)
    policy, opts = policy or KinkPolicy(), opts or CodegenOptions()
    body = _Gen(derive_residuals(prob, policy), opts, real).body()
    return finish(body, lambda digest: residual_header(prob, policy, opts, digest, real))


class _Gen(NormalFns):
    def __init__(self, rp: ResidualProgram, opts: CodegenOptions, real: str = "float64") -> None:
        p = rp.problem
        #: float32: the per-sample code (data, x, literals) in float32, its outputs widened
        self.f32 = real == "float32"
        self.rp, self.prob, self.opts = rp, p, opts
        self.P, self.m = len(p.params), p.m
        taken = set(RESERVED) | _LOCALS
        self.cols = column_args(p.data_names, taken)
        self.col_of = dict(zip(p.data_names, self.cols, strict=True))
        names: dict = {s: ident(s.name, "p_", taken) for s in p.params}
        names.update({s: ident(s.name, "d_", taken) for s in p.data_symbols})
        names.update({s: f"v{j}" for j, s in enumerate(rp.v)})
        self.names = TmpNames(names)
        self.pr = (F32Printer if self.f32 else ScalarPrinter)(self.names)
        self.jit = JIT
        self.jit_fm = jit(fastmath=True)  # the summing chunks (the skeleton's fastmath policy)
        self.jit_par = jit(parallel=True)  # the *_parallel drivers (not for parameter-only)
        self.jit_nogil = jit(nogil=True)  # what the kernel's threads call
        self.T = normal_totals(self.P)
        #: Each residual's nonzero Jacobian columns; loops sum J^T J when the products are many.
        self.rows_nz = [self.nonzero(k) for k in range(self.m)]
        self.looped = sum(len(nz) * (len(nz) + 1) // 2 for nz in self.rows_nz) > UNROLL_MAX

    # -- pieces ---------------------------------------------------------------------------
    def per_sample(self, outs: tuple[str, ...], sample: str = "i") -> list[str]:
        """Load the sample's data and compute the named outputs into locals: ``r{k}``
        (residuals), ``u{k*P+j}`` (Jacobian entries, structural zeros omitted), ``s{k}`` (J v).
        Temporaries used once are inlined."""
        prog = self.rp.program
        local = {"r": "r", "J": "u", "jv": "s"}
        cast = "np.float32" if self.f32 else "np.float64"
        lines = [f"{self.names[s]} = {cast}({self.col_of[s.column]}[{sample}"
                 + ("])" if s.component is None else f", {s.component}])")
                 for s in self.prob.data_symbols]
        wanted = [(f"{local[n]}{k}", e) for n in outs for k, e in enumerate(prog.outputs[n])]
        sched = prog.schedule(*outs)
        uses: dict = {}
        for e in [e for _, e in sched] + [e for _, e in wanted]:
            for s in e.free_symbols:
                if isinstance(s, Tmp):
                    uses[s] = uses.get(s, 0) + 1
        sub: dict = {}
        for t, e in sched:
            e = e.xreplace(sub) if sub else e
            if uses.get(t, 0) <= 1:
                sub[t] = e
            else:
                lines.append(f"{t.name} = {self.pr.doprint(e)}")
        for name, e in wanted:
            e = sp.sympify(e, strict=True)
            if e != 0 or name[0] == "r":
                text = self.pr.doprint(e.xreplace(sub) if sub else e)
                lines.append(f"{name} = np.float64({text})" if self.f32 else f"{name} = {text}")
        return lines

    def nonzero(self, k: int) -> list[int]:
        """Parameters residual ``k``'s gradient depends on (structural zeros are skipped)."""
        J = self.rp.program.outputs["J"]
        return [j for j in range(self.P) if sp.sympify(J[k * self.P + j], strict=True) != 0]

    def load_params(self, vec: str = "x") -> list[str]:
        """``p_a = x[0]``... (``vec="v"``: ``v0 = v[0]``...), rounded in a float32 module."""
        f = "np.float32({})" if self.f32 else "{}"
        names = [self.names[s] for s in self.prob.params] if vec == "x" else \
            [f"v{j}" for j in range(self.P)]
        return [f"{n} = {f.format(f'{vec}[{j}]')}" for j, n in enumerate(names)]

    def size(self) -> str:
        cols = self.cols
        names = ", ".join(self.prob.param_names[:8]) + (", ..." if self.P > 8 else "")
        body = [f"if x.shape[0] != {self.P}:",
                f'    raise ValueError("x must have {self.P} entries ({esc(names)})")']
        if not cols:
            return fn("_size(x)", "Check x; parameter-only residuals have one 'sample'.",
                       [*body, "return 1"], self.jit)
        body.append(f"N = {cols[0]}.shape[0]")
        body += [f'if {c}.shape[0] != N:\n    raise ValueError("data column {esc(d)} has a '
                 f'different number of samples than {esc(self.prob.data_names[0])}")'
                 for c, d in zip(cols[1:], self.prob.data_names[1:], strict=True)]
        body += [f'if {c}.shape[1] != {col.width}:\n    raise ValueError("data column '
                 f'{esc(col.name)} must have shape (N, {col.width})")'
                 for c, col in zip(cols, self.prob.columns, strict=True) if col.width is not None]
        return fn(f"_size(x, {', '.join(cols)})", "Check x and the columns; return N.",
                   [*body, "return N"], self.jit)

    def check(self, arr: str, shape: str, what: str, optional: bool = False) -> list[str]:
        cond = " or ".join(f"{arr}.shape[{d}] != {s}" for d, s in enumerate(shape.split(", ")))
        shown = shape if ", " in shape else shape + ","
        lines = [f"if {cond}:", f'    raise ValueError("{what} must have shape ({shown})")']
        if optional:
            lines = [f"if {arr} is not None:", *["    " + ln for ln in lines]]
        return lines

    def no_alias(self, out: str, *ins: str) -> list[str]:
        return [f'if _overlap({out}, {a}):\n    raise ValueError("{out} overlaps {a} in memory: '
                'pass a separate output array")' for a in ins]

    # -- functions ------------------------------------------------------------------------
    def functions(self) -> list[str]:
        return [self.size(), *self.residuals(), *self.rows(), *self.jvp(), *self.vjp(),
                *self.normal()]

    def tail(self) -> str:
        return "".join(f", {c}" for c in self.cols)

    def drivers(self, name: str, args: str, doc: str, checks: list[str], call: str,
                before: Sequence[str] = (), after: Sequence[str] = (),
                size: str = "N", run: str | None = None) -> list[str]:
        """The entry ``name(args)``: ``checks``, then ``size`` samples cut into ``nc`` chunks
        (``before`` the loop, ``after`` it: the partials summed in chunk order), chunk ``c``
        running ``call`` on samples ``c0..c1-1``; serial, and with data columns also
        ``name_parallel`` (the chunks under ``prange``) and, for a pass that sums into
        ``part`` (``run``: the arguments ``call`` reads), ``_name_run`` (chunks ``k0..k1-1``
        of ``nc``: a thread's share). All chunk alike, so their results are the same bits."""
        first = "lo + " if size == "n" else ""
        out = []
        for par in (False, True) if self.cols else (False,):
            loop = "numba.prange(nc)" if par else "range(nc)"
            body = [*checks, chunks(size), *before, f"for c in {loop}:",
                    f"    c0 = {first}c * {size} // nc", f"    c1 = {first}(c + 1) * {size} // nc",
                    f"    {call}", *after]
            text = f"{name} with its chunks on Numba's threads (the same bits)." if par else doc
            out.append(fn(f"{name}{'_parallel' if par else ''}({args}{self.tail()})", text, body,
                          self.jit_par if par else self.jit))
        if run is not None and self.cols:
            out.append(fn(f"_{name}_run({run}, N, nc, k0, k1, part{self.tail()})",
                          f"Chunks k0..k1-1 of {name}'s nc over N samples, each into its row "
                          "of part (a thread's share of the pass).",
                          ["for c in range(k0, k1):", "    c0 = c * N // nc",
                           "    c1 = (c + 1) * N // nc", f"    {call}"], self.jit_nogil))
        return out

    def residuals(self) -> list[str]:
        m = self.m
        chunk = fn(f"_residuals_chunk(x, lo, hi, out{self.tail()})",
                   "Write the residuals of samples lo..hi-1 into out.",
                   [*self.load_params(), "for i in range(lo, hi):",
                    *["    " + ln for ln in self.per_sample(("r",))],
                    *[f"    out[i * {m} + {k}] = r{k}" for k in range(m)]], self.jit_nogil)
        checks = [f"N = _size(x{self.tail()})", *self.check("out", f"N * {m}", "out"),
                  *self.no_alias("out", "x", *self.cols)]
        return [chunk, *self.drivers(
            "residuals", "x, out",
            "Write the residuals (sample-major: sample i at rows i*m..i*m+m-1) into out.",
            checks, f"_residuals_chunk(x, c0, c1, out{self.tail()})", after=["return out"])]

    def rows(self) -> list[str]:
        m, P = self.m, self.P
        body = [*self.load_params(), "for i in range(lo, hi):", f"    kk = (i - first) * {m}",
                *["    " + ln for ln in self.per_sample(("r", "J"))]]
        for k in range(m):
            nz = set(self.nonzero(k))
            body.append(f"    r[kk + {k}] = r{k}")
            body += [f"    J[kk + {k}, {j}] = " + (f"u{k * P + j}" if j in nz else "0.0")
                     for j in range(P)]
        chunk = fn(f"_rows_chunk(x, lo, hi, first, J, r{self.tail()})",
                   "Write the Jacobian rows and residuals of samples lo..hi-1 into J and r "
                   "(sample first at row 0).", body, self.jit_nogil)
        checks = [f"N = _size(x{self.tail()})",
                  "if lo < 0 or hi > N or lo > hi:",
                  '    raise ValueError("rows: need 0 <= lo <= hi <= N (the number of samples)")',
                  *self.check("J", f"(hi - lo) * {m}, {P}", "J"),
                  *self.check("r", f"(hi - lo) * {m}", "r"),
                  *self.no_alias("J", "x", "r", *self.cols),
                  *self.no_alias("r", "x", *self.cols), "n = hi - lo"]
        return [chunk, *self.drivers(
            "rows", "x, lo, hi, J, r",
            "Write the Jacobian rows and residuals of samples lo..hi-1 into J and r.",
            checks, f"_rows_chunk(x, c0, c1, lo, J, r{self.tail()})", after=["return J"],
            size="n")]

    def jvp(self) -> list[str]:
        m = self.m
        chunk = fn(f"_jvp_chunk(x, v, lo, hi, out{self.tail()})",
                   "Write J v of samples lo..hi-1 into out.",
                   [*self.load_params(), *self.load_params("v"), "for i in range(lo, hi):",
                    *["    " + ln for ln in self.per_sample(("jv",))],
                    *[f"    out[i * {m} + {k}] = s{k}" if sp.sympify(e, strict=True) != 0 else
                      f"    out[i * {m} + {k}] = 0.0"
                      for k, e in enumerate(self.rp.program.outputs["jv"])]], self.jit_nogil)
        checks = [f"N = _size(x{self.tail()})", *self.check("v", str(self.P), "v"),
                  *self.check("out", f"N * {m}", "out"),
                  *self.no_alias("out", "x", "v", *self.cols)]
        return [chunk, *self.drivers(
            "jvp", "x, v, out", "Write J v into out (one entry per residual).", checks,
            f"_jvp_chunk(x, v, c0, c1, out{self.tail()})", after=["return out"])]

    def vjp(self) -> list[str]:
        m, P = self.m, self.P
        body = [*self.load_params(), *[f"a{j} = 0.0" for j in range(P)],
                "for i in range(lo, hi):", *["    " + ln for ln in self.per_sample(("J",))]]
        for k in range(m):
            body.append(f"    w = u[i * {m} + {k}]")
            body += [f"    a{j} += w * u{k * P + j}" for j in self.nonzero(k)]
        body += [f"g[{j}] += a{j}" for j in range(P)]
        chunk = fn(f"_vjp_chunk(x, u, lo, hi, g{self.tail()})",
                    "Add J^T u over samples lo..hi-1 into g.", body, self.jit_fm)
        checks = [f"N = _size(x{self.tail()})", *self.check("u", f"N * {m}", "u"),
                  *self.check("out", str(P), "out"), *self.no_alias("out", "x", "u")]
        return [chunk, *self.drivers(
            "vjp", "x, u, out", "Write J^T u into out.", checks,
            f"_vjp_chunk(x, u, c0, c1, part[c]{self.tail()})",
            before=[f"part = np.zeros((nc, {P}))"],
            after=["out[:] = 0.0", "for c in range(nc):", f"    for j in range({P}):",
                   "        out[j] += part[c, j]", "return out"], run="x, u")]

    # -- module ---------------------------------------------------------------------------
    def body(self) -> str:
        p = self.prob
        head = preamble([
            "Residuals, Jacobian, J v, J^T u and the fused normal equations, compiled with Numba.",
            "",
            *(ln.replace("(1-D float64", "(1-D float32").replace("(float64", "(float32")
              if self.f32 else ln
              for ln in (_DOC_1D if all(c.width is None for c in p.columns) else _DOC_2D)),
            "Residuals are sample-major: sample i owns rows i*M_PER_SAMPLE .. +M_PER_SAMPLE-1.",
            *(_DOC_F32 if self.f32 else ()),
            "Arithmetic follows IEEE 754 (error_model='numpy'): non-finite values propagate."], [
            ("PARAMS", p.param_names), ("DATA", p.data_names), ("M_PER_SAMPLE", self.m),
            ("KINK_POLICY", self.rp.policy.describe()), ("BLOCK", BLOCK),
            *([("DTYPE", "float32")] if self.f32 else [])], self.opts)
        return assemble(head, self.functions(),
                        [NADD, *(lse_helper(a, False) for a in sorted(self.pr.lse_arities))],
                        adapt=f32_helpers if self.f32 else None)
