"""Pieces of a scalar loss's module text: its header, index offsets, dependency tests."""

from __future__ import annotations

import sympy as sp

from ...ad.derive import Tmp
from .names import CodegenOptions
from .skeleton import esc, wrap
from .skeleton import header as module_header

__all__ = ["header"]


def header(prob, policy, opts: CodegenOptions, digest: str) -> str:
    """The comment header of a scalar loss's module: what it computes, in which order, and the
    hash of its body (the cache recomputes it to verify an entry without deriving again)."""
    p = prob
    cols = ", ".join([*(f"{c.name}[N]" if c.width is None else f"{c.name}[N, {c.width}]"
                        for c in p.columns),
                      *(f"{e.name}[:] (element-wise)" for e in p.elements)]) or "none"
    order = [*p.param_names, *(f"{v.name}[:]" for v in p.vectors)]
    expr = esc(" ".join(str(p.expr).split()))
    return module_header(opts, policy, [
        "# loss:",
        *[f"#   {ln}" for ln in wrap(expr)],
        f"# parameters (order of x): {esc(', '.join(order))}",
        f"# data columns: {esc(cols)}",
    ], digest)


def _off(off: int) -> str:
    return f" + {off}" if off > 0 else f" - {-off}" if off < 0 else ""


def _depends(prog, out, syms: set) -> bool:
    """Whether output ``out`` of ``prog`` reads any of ``syms`` (directly or via temporaries)."""
    if not isinstance(out, Tmp):
        return bool(sp.sympify(out, strict=True).free_symbols & syms)
    return any(e.free_symbols & syms for _, e in prog.schedule_of(out))
