"""Common SymPy functions, re-exported so that losses need no SymPy import.

On scalars each is SymPy's own function; on array expressions it maps over the elements.
``max`` is SymPy's ``Max`` of several scalars, or the maximum of one array along ``axis``.

>>> import symgrad as sg
>>> x = sg.params("x")
>>> sg.exp(x) + sg.max(x, 0)
exp(x) + Max(0, x)
"""

from __future__ import annotations

import sympy as sp
from sympy.codegen import cfunctions

from ..ir.graph import Node
from .ops import apply, elementwise, max_, scalar_args

__all__ = ["abs", "cos", "cosh", "erf", "exp", "expm1", "log", "log1p", "max", "sin", "sinh",
           "sqrt", "tan", "tanh"]

exp = elementwise(sp.exp)
log = elementwise(sp.log)
sqrt = elementwise(sp.sqrt)
tanh = elementwise(sp.tanh)
sin = elementwise(sp.sin)
cos = elementwise(sp.cos)
tan = elementwise(sp.tan)
sinh = elementwise(sp.sinh)
cosh = elementwise(sp.cosh)
erf = elementwise(sp.erf)
abs = elementwise(sp.Abs, "abs")
log1p = elementwise(cfunctions.log1p)  # log(1 + x) and exp(x) - 1, accurate near 0
expm1 = elementwise(cfunctions.expm1)


def max(*args, axis=None):
    """``Max(a, b, ...)`` of scalars, the maximum of one array along ``axis``, or of several
    arrays element by element (``np.maximum``, with NumPy's broadcasting; differentiated as the
    chain ``Max(Max(a, b), c)``, as for scalars)."""
    args = scalar_args("sg.max", args)
    if len(args) == 1 and isinstance(args[0], Node):
        return max_(args[0], axis)
    if axis is not None:
        raise TypeError("axis= applies to one array: sg.max(A, axis=0); several arrays are "
                        "compared element by element, sg.max(A, B)")
    if any(isinstance(a, Node) for a in args):
        return apply(sp.Max, *args)
    return sp.Max(*args)
