"""Readable straight-line text of a derivative :class:`~symgrad.ad.derive.Program` (``formulas()``).

>>> import sympy as sp
>>> from symgrad.ad.derive import Builder, Program
>>> a, b = sp.symbols("a b", real=True)
>>> bl = Builder(); e = bl.node(sp.exp(a*b) + a); g = bl.gradient(e, [a, b])
>>> print(program_text(Program(tuple(bl.assigns), {"e": (e,), "g": tuple(g)}), ("e", "g")))
_t0 = a*b
_t1 = exp(_t0)
_t2 = a + _t1
_t3 = b*_t1
_t4 = a*_t1
_t5 = _t3 + 1
e = _t2
g[0] = _t5
g[1] = _t4
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["program_text"]


def program_text(prog, names: Sequence[str]) -> str:
    """The assignments the outputs ``names`` need, then one line per output entry."""
    lines = [f"{t} = {e}" for t, e in prog.schedule(*names)]
    for name in names:
        outs = prog.outputs[name]
        if len(outs) == 1 and name in ("e", "F", "t"):
            lines.append(f"{name} = {outs[0]}")
        else:
            lines += [f"{name}[{i}] = {o}" for i, o in enumerate(outs)]
    return "\n".join(lines)
