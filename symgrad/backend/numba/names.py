"""Identifiers in generated modules: reserved names, user names made safe, the options.

>>> ident("x-1", "p_", {"p_x_1"})
'p_x_1_2'
"""

from __future__ import annotations

import builtins
import keyword
import re
from collections.abc import Sequence
from dataclasses import dataclass

from ...ad.derive import Tmp

__all__ = ["RESERVED", "CodegenOptions", "TmpNames", "column_args", "ident"]

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


def ident(name: str, prefix: str, taken: set) -> str:
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
    "PARAMS", "VECTORS", "DATA", "KINK_POLICY", "ANALYTIC", "at_zero", "r", "u"})
_GENERATED = re.compile(r"[arsuv][0-9]+|\w+_parallel")


def column_args(names: Sequence[str], taken: set) -> list[str]:
    """Argument names for the data columns named ``names`` (per-sample, then element-wise).

    Names are NFKC-normalised at declaration, so the text here is what Python will read; a name
    the module uses itself, a keyword or a private name gets a ``col_`` prefix (and a suffix if
    even that is taken). The names chosen are added to ``taken``."""
    out = []
    for nm in names:
        if (nm in _MODULE_NAMES or keyword.iskeyword(nm) or nm.startswith("_") or nm in taken
                or _GENERATED.fullmatch(nm) or not nm.isidentifier()):
            nm = ident(nm, "col_", taken)
        taken.add(nm)
        out.append(nm)
    return out



class TmpNames(dict):
    """Printer names: the given symbols' names, and a temporary's own name otherwise."""

    def __missing__(self, key):
        if isinstance(key, Tmp):
            return key.name
        raise KeyError(key)

    def __contains__(self, key):
        return isinstance(key, Tmp) or dict.__contains__(self, key)

