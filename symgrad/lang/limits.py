"""The limits of the safe parser (:mod:`symgrad.lang.parse`) and its small number helpers.

Limits keep a hostile or mistaken expression from running for ever: its length, its nodes, its
nesting, its exponents and the digits of any exact constant built from its literals.

>>> natural_key("x10") > natural_key("x2")
True
"""

from __future__ import annotations

import math
import re

import sympy as sp

__all__ = ["MAX_DEPTH", "MAX_DIGITS", "MAX_EXPONENT", "MAX_LENGTH", "MAX_NODES", "natural_key"]

#: Longest expression accepted, in characters.
MAX_LENGTH = 20_000
#: Most syntax-tree nodes accepted.
MAX_NODES = 5_000
#: Deepest nesting accepted (a chain ``a + b - c + ...`` or ``a*b/c*...`` is one level).
MAX_DEPTH = 100
#: Largest numeric exponent accepted (``2**10**100`` would never finish).
MAX_EXPONENT = 1_000
#: Most decimal digits in a number literal and in any exact constant computed from literals
#: (``(2**999)**999`` is refused before it is computed). float64 ends near 1e308.
MAX_DIGITS = 1_000



def _too_big(e: sp.Expr) -> bool:
    if isinstance(e, sp.Rational):
        return max(abs(int(e.p)), int(e.q)).bit_length() > MAX_DIGITS * 3.33
    if isinstance(e, sp.Float):
        return not math.isfinite(float(e)) or abs(float(e)) > 1.7976931348623157e308
    return False


def _short(e: sp.Expr) -> str:
    t = str(e)
    return t if len(t) <= 20 else f"({t[:8]}...{t[-4:]}, {len(t)} characters)"


def _power_digits(a: sp.Expr, b: sp.Expr) -> float:
    """About how many digits the exact power ``a**b`` of two numbers has (0 if not exact)."""
    if not (isinstance(a, sp.Rational) and isinstance(b, sp.Rational)) or a == 0:
        return 0.0
    return abs(float(b)) * math.log10(max(abs(int(a.p)), int(a.q)))


def natural_key(name: str) -> tuple:
    """Sort key that puts x2 before x10: runs of digits compare as numbers.

    >>> sorted(["x10", "b", "x2", "a"], key=natural_key)
    ['a', 'b', 'x2', 'x10']
    """
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name))
