"""float32 code: a scalar printer whose literals and helper results stay float32.

>>> f32_helpers("return 0.5 if x == 0.0 else 1.0")
'return np.float32(0.5) if x == np.float32(0.0) else np.float32(1.0)'
"""

from __future__ import annotations

import re

import numpy as np

from .printer import ScalarPrinter

__all__ = ["F32Printer", "f32_helpers"]


class F32Printer(ScalarPrinter):
    """Scalar code that stays in float32: literals are float32 and so are helper results
    (Numba's ``math`` functions keep float32; a Python float literal would promote)."""

    def _f32(self, text: str) -> str:
        return f"np.float32({text})"

    def _print_Float(self, e):
        v = float(e)
        with np.errstate(over="ignore", under="ignore"):
            f = np.float32(v)
        if v != 0 and (np.isinf(f) or f == 0):  # the sample loop would compute with inf or 0
            raise ValueError(f"the constant {v:g} is {'beyond' if f else 'below'} the range of "
                             f"float32, which would read it as {float(f):g}, in the loss's "
                             "per-sample arithmetic: rescale it (and the data), or leave dtype "
                             "unset (float64)")
        return self._f32(super()._print_Float(e))

    _print_Integer = _print_Rational = _print_Float
    _print_Pi = _print_Exp1 = _print_Float

    def _print_Zero(self, e):
        return self._f32("0.0")

    def _print_One(self, e):
        return self._f32("1.0")

    def _print_NegativeOne(self, e):
        return self._f32("-1.0")

    def _print_Half(self, e):
        return self._f32("0.5")

    def _print_Pow(self, e, rational=False):
        text = super()._print_Pow(e, rational)
        return text.replace("(1.0/", "(np.float32(1.0)/")



def f32_helpers(text: str) -> str:
    """The kink helpers with float32 literals, so that they return float32 for float32."""
    return re.sub(r"(?<![\w.])(\d+\.\d+)", r"np.float32(\1)", text)

