"""Indexed sums over parameter vectors (``sum(f(w[i], w[i+1]), (i, 0, n-2))``): one loop per
sum for the value, the gradient scatter, the directional derivative and the HVP scatter."""

from __future__ import annotations

from .skeleton import JIT, LO, esc, fn, hessian_fn
from .text import _depends, _off


class _VectorFns:
    """The vector-sum functions of :class:`~symgrad.backend.numba.scalar._Gen` (a mixin)."""

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
        idx = esc(str(vs.index))
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
                        f'{esc(el.name)}: pass a longer array or shorten the index range")']
        eload = [f"{self.names[e]} = np.float64({self.ecol_of[c]}[i{_off(off)}])"
                 for e, c, off in vt.elements]
        ys = [eload + self.vec_load(vt, "x", lambda y, vy: y)]
        vys = [self.vec_load(vt, "v", lambda y, vy: vy)]
        ns = self.ns
        et = "".join(f", {c}" for c in self.ecols)
        # Plain (no fastmath, the skeleton's policy): the gradient scatters into g[i + k], and
        # reassociation does not vectorise such loops; measured, the plain loop is the faster one.
        jit = JIT
        out = []
        # value (and its complex variant for complex-step checks)
        variants = [("", self.real, "0.0", f"Sum {j} over its index range.")]
        if self.analytic:
            variants.append(("_c", self.cplx, "0j", f"Complex variant of _vs{j}_value."))
        for sfx, pr, zero, doc in variants:
            body = [*self.load_params(), *rng, f"s = {zero}", "for i in range(lo, hi):",
                    *["    " + ln for ln in ys[0]],
                    *["    " + ln for ln in self.assigns(prog, ("t",), pr)],
                    f"    s += {self.p(prog.outputs['t'][0], pr)}", "return s"]
            out.append(fn(f"_vs{j}_value{sfx}(x, n{et})", doc, body, jit))
        # gradient scatter
        body = [*self.load_params(), *rng, "s = 0.0", *[f"a{k} = 0.0" for k in range(ns)],
                "for i in range(lo, hi):", *["    " + ln for ln in ys[0]],
                *["    " + ln for ln in self.assigns(prog, ("t", "gy", "gx"), self.real)],
                f"    s += {self.p(prog.outputs['t'][0])}"]
        for (_, vec, off), gy in zip(vt.locals, prog.outputs["gy"], strict=True):
            body.append(f"    g[{self.loc_index(vec, off)}] += w * ({self.p(gy)})")
        body += [f"    a{k} += {self.p(e)}" for k, e in enumerate(prog.outputs["gx"])]
        body += [f"g[{k}] += w * a{k}" for k in range(ns)] + ["return s"]
        out.append(fn(f"_vs{j}_grad(x, n, w, g{et})",
                       f"Sum {j}; adds w times its gradient into g (scattered per element).",
                       body, jit))
        # directional derivative
        body = [*self.load_params(), *self.load_v(), *rng, "s = 0.0", "u = 0.0",
                "for i in range(lo, hi):", *["    " + ln for ln in ys[0] + vys[0]],
                *["    " + ln for ln in self.assigns(prog, ("t", "dir"), self.real)],
                f"    s += {self.p(prog.outputs['t'][0])}",
                f"    u += {self.p(prog.outputs['dir'][0])}", "return s, u"]
        out.append(fn(f"_vs{j}_dir(x, v, n{et})", f"Sum {j} and its derivative along v.", body,
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
        out.append(fn(f"_vs{j}_hvp(x, v, n, w, z, out{et})",
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
            out.extend(self.sample_fns(self.analytic))
        for j in range(m):
            out.extend(self.vec_fns(j))
        vecs = ", ".join(v.name for v in p.vectors)
        scal = ", ".join(p.param_names) or "no scalars"
        if self.M:
            out.append(fn("_n_vec(x)", "The vectors' length n from the length of x.", [
                f"r = x.shape[0] - {self.ns}",
                f"if r < {self.M} or r % {self.M} != 0:",
                f'    raise ValueError("x must hold the scalars ({esc(scal)}) then the vector(s) '
                f'({esc(vecs)}) of one common length n >= 1")',
                f"return r // {self.M}"]))
        else:  # index sums over data columns only: x holds the scalars
            out.append(fn("_n_vec(x)", "No parameter vectors: checks x, returns n = 0.", [
                self.check_x(), "return 0"]))
        sizes = {"e": K, "g": K + K * n, "h": K + 2 * K * n}

        def samples(mode: str, args: str = "x") -> list[str]:
            if not K:
                return []
            return [f"N = _n_samples({cols}, idx)", f"acc = np.zeros({sizes[mode]})",
                    f"_acc_{mode}({args}, {cols}, idx, {LO}, N, acc)", *self.load_r()]

        S = [f"s{j}" for j in range(m)]
        # value
        body = ["n = _n_vec(x)", *samples("e"),
                *[f"{S[j]} = _vs{j}_value(x, n{et})" for j in range(m)],
                *self.load_params(), *self.assigns(o, ("F",), self.real),
                f"return {self.p(o.outputs['F'][0])}"]
        out.append(fn(f"value(x{tail})", "The loss at x.", body))
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
        out.append(fn(f"value_and_grad(x, g{tail})",
                       "The loss at x; its gradient is written into g.", body))
        out.append(fn(f"grad(x, g{tail})", "Write the gradient at x into g.", [
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
        out.append(fn(f"hvp(x, v, out{tail})", "Write the Hessian at x times v into out.", body))
        out.append(hessian_fn(None, f"x, H{tail}", f"hvp(x, {{e}}, {{col}}{call_tail})"))
        if self.analytic:
            body = ["n = _n_vec(x)"]
            if K:
                body += [f"N = _n_samples({cols}, idx)",
                         f"acc = np.zeros({K}, dtype=np.complex128)",
                         f"_acc_e_c(x, {cols}, idx, {LO}, N, acc)", *self.load_r()]
            body += [f"{S[j]} = _vs{j}_value_c(x, n{et})" for j in range(m)]
            body += [*self.load_params(), *self.assigns(o, ("F",), self.cplx),
                     f"return {self.p(o.outputs['F'][0], self.cplx)}"]
            out.append(fn(f"value_complex(x{tail})",
                           "The loss at complex x (complex-step checks).", body))
        return out
