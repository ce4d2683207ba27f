"""The fused normal-equation pass of a residual module: ``normal`` (``normal_parallel``,
``_normal_run``), its chunk function and the compensated sum of the chunks (``_normal_finish``).

A mixin of :class:`symgrad.backend.numba.residual_module._Gen`: each chunk of samples runs in
blocks of :data:`BLOCK` samples summed plainly, whose sums are added into the chunk's totals
with Neumaier compensation (:data:`NADD`); small Jacobians unroll every product, larger ones
(above :data:`UNROLL_MAX` products per sample) loop over the columns of a stored block.
"""

from __future__ import annotations

from .skeleton import JIT, fn

__all__ = ["BLOCK", "NADD", "UNROLL_MAX", "NormalFns", "normal_totals"]

#: Samples summed plainly before a block's sums are added (compensated) into a chunk's totals.
BLOCK = 256
#: The fused J^T J pass is unrolled (every product a line) while the products per sample
#: number at most this many (P = 12 for a dense row); above, loops over the Jacobian's columns
#: (at P = 14 as fast to run and faster to compile; at P = 40, 7 s to compile instead of 100).
UNROLL_MAX = 78


def normal_totals(P: int) -> int:
    """The normal pass's totals per chunk for P parameters: J^T J's upper triangle, J^T r and
    r^T r (each chunk's row of ``part`` holds them, and their compensations)."""
    return P * (P + 1) // 2 + P + 1


#: Neumaier summation of a block's sums into a chunk's totals (a helper of the normal pass).
NADD = f'''
{JIT}
def _nadd(acc, q, v):
    """Neumaier: add v to acc[0, q], its rounding error to acc[1, q]."""
    s = acc[0, q]
    t = s + v
    if abs(s) >= abs(v):
        acc[1, q] += (s - t) + v
    else:
        acc[1, q] += (v - t) + s
    acc[0, q] = t
'''


class NormalFns:
    """``normal``, ``normal_parallel`` and ``_normal_chunk`` of the residual generator (a
    mixin; the drivers are :meth:`~symgrad.backend.numba.residual_module._Gen.drivers`)."""

    def normal(self) -> list[str]:
        m, P, T = self.m, self.P, self.T
        rows = self.rows_nz
        nb = P * (P + 1) // 2
        body = self._normal_loops(rows) if self.looped else self._normal_unrolled(rows)
        chunk = fn(f"_normal_chunk(x, js, rs, lo, hi, acc{self.tail()})",
                    f"Add the normal-equation sums of samples lo..hi-1 into acc (2, {T}): "
                    f"blocks of {BLOCK} summed plainly, block sums added compensated.",
                    body, self.jit_fm)
        checks = [f"N = _size(x{self.tail()})", *self.check("A", f"{P}, {P}", "A"),
                  *self.check("bv", str(P), "bv"),
                  *self.check("js", f"N * {m}", "jscale", True),
                  *self.check("rs", f"N * {m}", "rscale", True),
                  *self.no_alias("A", "x", "bv"), *self.no_alias("bv", "x")]
        finish = fn("_normal_finish(part, A, bv)",
                     "Add the chunks' rows of part (nc x 2 x T: sums, compensations) in "
                     "order, compensated, into A and bv; return r^T r.",
                     [f"tot = np.zeros((2, {T}))", "for c in range(part.shape[0]):",
                      f"    for q in range({T}):", "        _nadd(tot, q, part[c, 0, q])",
                      "        _nadd(tot, q, part[c, 1, q])", "q = 0", f"for j in range({P}):",
                      f"    for k in range(j, {P}):", "        A[j, k] = tot[0, q] + tot[1, q]",
                      "        A[k, j] = A[j, k]", "        q += 1", f"for j in range({P}):",
                      f"    bv[j] = tot[0, {nb} + j] + tot[1, {nb} + j]",
                      f"return tot[0, {T - 1}] + tot[1, {T - 1}]"], self.jit)
        doc = ("One fused pass: A = (aJ)^T (aJ), bv = (aJ)^T (b r), returns (b r)^T (b r), "
               "with a = js, b = rs (None: 1); J is never stored" +
               (f" (a block of {BLOCK} samples' rows at a time)." if self.looped else "."))
        return [chunk, finish, *self.drivers(
            "normal", "x, A, bv, js, rs", doc, checks,
            f"_normal_chunk(x, js, rs, c0, c1, part[c]{self.tail()})",
            before=[f"part = np.zeros((nc, 2, {T}))"], after=["return _normal_finish(part, A, bv)"],
            run="x, js, rs")]

    def _normal_unrolled(self, rows: list[list[int]]) -> list[str]:
        """Small P: every product a named local, the block's sums in locals (fastest to run)."""
        m, P, T = self.m, self.P, self.T
        pos = {(j, k): q for q, (j, k) in enumerate((j, k) for j in range(P)
                                                     for k in range(j, P))}
        nb = len(pos)
        inner = self.per_sample(("r", "J"))
        for k, nz in enumerate(rows):
            inner += [f"w = 1.0 if js is None else js[i * {m} + {k}]",
                      f"z = (1.0 if rs is None else rs[i * {m} + {k}]) * r{k}",
                      *[f"u{k * P + j} *= w" for j in nz]]
            inner += [f"s{pos[j, jj]} += u{k * P + j} * u{k * P + jj}"
                      for a, j in enumerate(nz) for jj in nz[a:]]
            inner += [f"s{nb + j} += u{k * P + j} * z" for j in nz]
            inner.append(f"s{T - 1} += z * z")
        # One call site of _nadd (a loop over the block's sums): 66 inlined copies of it for
        # P = 10 took five times longer to compile and ran slower.
        return [*self.load_params(), f"blk = np.empty({T})",
                f"for b0 in range(lo, hi, {BLOCK}):", f"    b1 = min(b0 + {BLOCK}, hi)",
                *[f"    s{q} = 0.0" for q in range(T)],
                "    for i in range(b0, b1):", *["        " + ln for ln in inner],
                *[f"    blk[{q}] = s{q}" for q in range(T)],
                f"    for q in range({T}):", "        _nadd(acc, q, blk[q])"]

    def _normal_loops(self, rows: list[list[int]]) -> list[str]:
        """Larger P: the block's scaled Jacobian rows are stored column by column in ``Jb``
        (P x rows of the block) and every sum of the block is a loop (a dot product of two
        columns), so the text and Numba's compile time grow linearly in P (unrolled, compile
        time grew faster than P**2) and the sums vectorise."""
        m, P, T = self.m, self.P, self.T
        nb = P * (P + 1) // 2
        inner = self.per_sample(("r", "J"))
        inner.append(f"kk = (i - b0) * {m}")
        for k, row in enumerate(rows):
            nz = set(row)
            inner += [f"w = 1.0 if js is None else js[i * {m} + {k}]",
                      f"zb[kk + {k}] = (1.0 if rs is None else rs[i * {m} + {k}]) * r{k}"]
            inner += [f"Jb[{j}, kk + {k}] = " + (f"u{k * P + j} * w" if j in nz else "0.0")
                      for j in range(P)]
        return [
            *self.load_params(), f"Jb = np.empty(({P}, min(hi - lo, {BLOCK}) * {m}))",
            f"zb = np.empty(min(hi - lo, {BLOCK}) * {m})", f"sb = np.empty({T})",
            f"for b0 in range(lo, hi, {BLOCK}):", f"    b1 = min(b0 + {BLOCK}, hi)",
            f"    nr = (b1 - b0) * {m}", "    for i in range(b0, b1):",
            *["        " + ln for ln in inner],
            "    q = 0", f"    for ka in range({P}):", f"        for kb in range(ka, {P}):",
            "            tot = 0.0", "            for kr in range(nr):",
            "                tot += Jb[ka, kr] * Jb[kb, kr]", "            sb[q] = tot",
            "            q += 1",
            "        tot = 0.0", "        for kr in range(nr):",
            "            tot += Jb[ka, kr] * zb[kr]", f"        sb[{nb} + ka] = tot",
            "    tot = 0.0", "    for kr in range(nr):", "        tot += zb[kr] * zb[kr]",
            f"    sb[{T - 1}] = tot",
            f"    for q in range({T}):", "        _nadd(acc, q, sb[q])"]
