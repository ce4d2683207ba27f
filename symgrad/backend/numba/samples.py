"""Losses with reductions over samples: one fused pass accumulates every reduction's value,
gradient and Hessian-vector sums (serial and prange variants), then the outer chain rule."""

from __future__ import annotations

from .skeleton import LO, chunks, esc, fn, hessian_fn, jit

#: Samples per float32 partial sum of a float32 module's sample loop (see
#: :meth:`_SampleFns.f32_blocks`): 128 float32 terms, summed in 32 lanes (4 each), round like a
#: few of their terms; the loop runs about 2.4x faster than float64 accumulators (measured), and
#: as fast as with blocks of 1024, whose sums were 10x less accurate (2e-7 of a softmax
#: regression's loss at its minimum, which made L-BFGS's line search fail).
F32_BLOCK = 128


class _SampleFns:
    """The sample-loop functions of :class:`~symgrad.backend.numba.scalar._Gen` (a mixin)."""

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
            out.append(self.rows_fn(mode, cols))
        if cplx_ok:
            out.append(self.par_fn("e", K, cols, cplx=True))
        out.append(fn(f"_n_samples({cols}, idx)",
                       "Number of samples used; checks the columns agree and idx is in range.", [
                           f"N = {self.cols[0]}.shape[0]",
                           *[f'if {c}.shape[0] != N:\n    raise ValueError('
                             f'"data column {esc(c)} has a different number of samples")'
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
                           "if lo < 0 or hi >= N:  # the numbers as arguments: str(int) "
                           "would cost 1.3 s of compile",
                           '    raise ValueError("batch (idx): a sample index is outside [0, N), '
                           'N the length of the data columns (the index, N):", '
                           'lo if lo < 0 else hi, N)',
                           "return idx.shape[0]"]))
        return out

    def with_data(self) -> list[str]:
        K, n = self.K, self.n
        cols = ", ".join(self.cols)
        sizes = {"e": K, "g": K + K * n, "h": K + 2 * K * n}
        out = self.sample_fns(self.analytic)
        out.extend(self.finish_fns())
        for par in (False, True):
            sfx, drv = ("_parallel", "_par_") if par else ("", "_acc_")
            tail = f"{cols}, idx=None"
            def run(m: str, a: str, drv: str = drv) -> str:
                rng = "N, acc)" if drv == "_par_" else f"{LO}, N, acc)"
                return f"{drv}{m}({a}, {cols}, idx, {rng}"

            out.append(fn(f"value{sfx}(x, {tail})", "The loss at x.", [
                self.check_x(), f"N = _n_samples({cols}, idx)",
                f"acc = np.zeros({sizes['e']})", run("e", "x"),
                "return _finish_e(x, acc, N)"]))
            out.append(fn(f"value_and_grad{sfx}(x, g, {tail})",
                           "The loss at x; its gradient is written into g.", [
                               self.check_x(), self.check_x("g"), *self.no_alias("g", "x"),
                               f"N = _n_samples({cols}, idx)",
                               f"acc = np.zeros({sizes['g']})", run("g", "x"),
                               "return _finish_g(x, acc, N, g)"]))
            out.append(fn(f"grad{sfx}(x, g, {tail})", "Write the gradient at x into g.", [
                f"value_and_grad{sfx}(x, g, {cols}, idx)", "return g"]))
            out.append(fn(f"hvp{sfx}(x, v, out, {tail})",
                           "Write the Hessian at x times v into out.", [
                               self.check_x(), self.check_x("v"), self.check_x("out"),
                               *self.no_alias("out", "x", "v"), f"N = _n_samples({cols}, idx)",
                               f"acc = np.zeros({sizes['h']})", run("h", "x, v"),
                               "return _finish_h(x, v, acc, N, out)"]))
            out.append(hessian_fn(n, f"x, H, {tail}", f"hvp{sfx}(x, {{e}}, {{col}}, {cols}, idx)",
                                   f"hessian{sfx}"))
        if self.analytic:
            out.append(fn(f"value_complex(x, {cols}, idx=None)",
                           "The loss at complex x (complex-step checks).", [
                               f"N = _n_samples({cols}, idx)",
                               f"acc = np.zeros({K}, dtype=np.complex128)",
                               f"_acc_e_c(x, {cols}, idx, {LO}, N, acc)",
                               "return _finish_e_c(x, acc, N)"]))
        return out

    def acc_fn(self, mode: str, outs: tuple[str, ...], cplx: bool) -> str:
        s = self.der.sample
        pr = self.cplx if cplx else self.sample_pr
        zero = "0j" if cplx else "0.0"  # float64 totals in a float32 module too
        sums = [o for name in outs for o in s.outputs[name]]
        lines = [*self.load_params(sample=True)]
        args = "x, v" if mode == "h" else "x"
        if mode == "h":
            lines += self.load_v(sample=True)
        lines += [f"a{j} = {zero}" for j in range(len(sums))]
        # Over a range, read views starting at lo so that i starts at a literal 0: Numba then
        # knows i >= 0, drops its negative-index wraparound, and the loop vectorises.
        lines.append("if idx is None:")
        lines += [f"    {c} = {c}[lo:hi]" for c in self.cols]
        if self.f32 and not cplx:
            lines += self.f32_blocks(s, outs, pr, sums)
        else:
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
        # called from Python only by Dask's chunk tasks: without the GIL they run side by side
        return fn(name, doc, lines, jit(fastmath=True, nogil=True))

    def f32_blocks(self, s, outs: tuple[str, ...], pr, sums: list) -> list[str]:
        """A float32 module's sample loop: blocks of ``F32_BLOCK`` samples summed in float32
        (``_q0``...: the float32 loop vectorises twice as wide as float64, and a block's sum
        carries about the rounding of its float32 terms), the blocks' sums added to the
        float64 totals ``a0``... (which do not lose digits as N grows). Each block reads views
        starting at 0, as the float64 loop does."""
        view = {c: f"_c{j}" for j, c in enumerate(self.cols)}
        lines = [f"for j in range(0, hi - lo, {F32_BLOCK}):",
                 f"    m = min(hi - lo - j, {F32_BLOCK})",
                 *[f"    {v} = {c}[j:j + m] if idx is None else {c}" for c, v in view.items()],
                 *[f"    _q{j} = np.float32(0.0)" for j in range(len(sums))],
                 "    for k in range(m):",
                 "        i = k if idx is None else idx[lo + j + k]"]
        lines += ["        " + ln for ln in self.load_data(view)]
        lines += ["        " + ln for ln in self.assigns(s, outs, pr)]
        lines += [f"        _q{j} += {self.p(e, pr)}" for j, e in enumerate(sums)]
        lines += [f"    a{j} += _q{j}" for j in range(len(sums))]
        return lines

    def par_fn(self, mode: str, size: int, cols: str, cplx: bool = False) -> str:
        args = "x, v" if mode == "h" else "x"
        sfx = "_c" if cplx else ""
        dtype = ", dtype=np.complex128" if cplx else ""
        return fn(f"_par_{mode}{sfx}({args}, {cols}, idx, N, acc)",
                   "Parallel version of the sample pass: chunks under prange, then a sum.", [
                       chunks(),
                       f"rows = np.zeros((nc, {size}){dtype})",
                       "for c in numba.prange(nc):",
                       f"    _acc_{mode}{sfx}({args}, {cols}, idx, c * N // nc, (c + 1) * N // nc, "
                       "rows[c])",
                       "for c in range(nc):",
                       f"    for m in range({size}):",
                       "        acc[m] += rows[c, m]"],
                   jit(parallel=True))

    def rows_fn(self, mode: str, cols: str) -> str:
        """``_rows_<mode>``: chunks ``lo..hi-1`` of the ``nc`` chunks of ``_par_<mode>``, each
        into its row: what a kernel's threads run (:mod:`symgrad.runtime.threads`), compiled
        serially; the rows summed in chunk order are ``_par_<mode>``'s sum, the same bits."""
        args = "x, v" if mode == "h" else "x"
        return fn(f"_rows_{mode}({args}, {cols}, idx, N, nc, lo, hi, rows)",
                  "Chunks lo..hi-1 of the nc chunks of the sample pass, each into its row.", [
                      "for c in range(lo, hi):",
                      f"    _acc_{mode}({args}, {cols}, idx, c * N // nc, (c + 1) * N // nc, "
                      "rows[c])"], jit(nogil=True))

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
        out = [fn("_finish_e(x, acc, N)", "The outer loss from the reduction sums.", [
            *self.load_params(), *self.load_r(), *self.assigns(o, ("F",), self.real),
            f"return {self.p(F)}"])]
        if self.analytic:
            out.append(fn("_finish_e_c(x, acc, N)", "Complex variant of _finish_e.", [
                *self.load_params(), *self.load_r(), *self.assigns(o, ("F",), self.cplx),
                f"return {self.p(F, self.cplx)}"]))
        lines = [*self.load_params(), *self.load_r(),
                 *self.assigns(o, ("F", "dx", "dR"), self.real)]
        lines += [f"g[{j}] = {self.p(e)}" for j, e in enumerate(o.outputs["dx"])]
        lines += self.chain_grad()
        lines.append(f"return {self.p(F)}")
        out.append(fn("_finish_g(x, acc, N, g)",
                       "Outer chain rule: g = dF/dx + sum_k dF/dR_k * dR_k/dx.", lines))
        lines = [*self.load_params(), *self.load_v(), *self.load_r(), *self.jv()]
        lines += self.assigns(o, ("dR", "hx", "hR"), self.real)
        lines += [f"out[{j}] = {self.p(e)}" for j, e in enumerate(o.outputs["hx"])]
        lines += self.chain_hvp()
        lines.append("return out")
        out.append(fn("_finish_h(x, v, acc, N, out)",
                       "Outer Hessian-vector product: (F_xx v + F_xR u) + J^T (F_Rx v + F_RR u)"
                       " + sum_k F_R_k H_k v, with u = J v.", lines))
        return out

