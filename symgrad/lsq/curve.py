"""``curve_fit``'s inputs checked in the caller's terms: the model (text parsed safely, never
evaluated), ``xdata``/``ydata`` and ``p0``.

>>> import numpy as np
>>> expr, ps = curve_model("k*x", {"x": np.arange(3.0)}, None)
>>> [p.name for p in ps], sorted(str(s) for s in expr.free_symbols)
(['k'], ['k', 'x'])
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import sympy as sp

from ..errors import ProblemError
from ..lang.parse import ExprError, names_in, param_names, parse_loss
from ..lang.symbols import Param, as_expr

__all__ = ["check_curve_inputs", "curve_model"]


def _names(spec) -> list[str]:
    if isinstance(spec, str):
        return spec.replace(",", " ").split()
    return [str(getattr(s, "name", s)) for s in spec]


def curve_model(model, xdata, params) -> tuple[sp.Expr, list | None]:
    """The model as a SymPy expression, and the parameters (``params`` unless text fixes them).

    Text is parsed by :func:`symgrad.lang.parse.parse_loss` (nothing in it is executed): the
    data names are ``xdata``'s keys when it is a dict, else every name not in ``params``; one
    of the two is needed to tell data from parameters. Anything else must be a SymPy
    expression (strings are never passed to ``sympify``).
    """
    if not isinstance(model, str):
        return as_expr(model, "curve_fit: model"), params
    try:
        used = names_in(model)
    except ExprError as exc:
        raise ProblemError(f"curve_fit: model {model!r}: {exc}") from None
    if isinstance(xdata, Mapping):
        data = [str(k) for k in xdata if str(k) in used]
    elif params is not None:
        data = [n for n in used if n not in _names(params)]
    else:
        raise TypeError("curve_fit got the model as text: say which names are data by passing "
                        "xdata as a dict ({'x': values}) or the parameters with params=[...]")
    pnames = None if params is None else _names(params)
    try:
        expr = parse_loss(model, params=pnames, data=data)
        order = param_names(model, pnames, data)
    except ExprError as exc:
        raise ProblemError(f"curve_fit: model {model!r}: {exc}") from None
    return expr, [Param(n) for n in order]


def check_curve_inputs(cols: Mapping[str, np.ndarray], ydata, p0,
                       param_names: list[str]) -> np.ndarray:
    """``ydata`` as a 1-D float64 array the length of the ``xdata`` columns, and ``p0`` of the
    right size: errors name ``ydata``/``p0`` as the caller wrote them."""
    y = np.asarray(ydata, dtype=np.float64)
    if y.ndim != 1:
        raise ValueError(f"curve_fit: ydata must be 1-D (one value per sample), got shape "
                         f"{y.shape}")
    for name, c in cols.items():
        n = np.shape(c)[0] if np.ndim(c) else 1
        if n != y.shape[0]:
            raise ValueError(f"curve_fit: ydata has {y.shape[0]} values but the data column "
                             f"{name!r} (xdata) has {n}: give one y value per sample")
    bad = np.flatnonzero(~np.isfinite(y))
    if bad.size:
        raise ValueError(f"curve_fit: ydata has a non-finite value ({y[bad[0]]}) at row "
                         f"{bad[0]} ({bad.size} in all): clean or drop it before fitting")
    if p0 is None:
        raise TypeError(f"curve_fit needs p0, a start for each parameter "
                        f"({', '.join(param_names)}): a list or a dict by name")
    if not isinstance(p0, Mapping) and np.size(p0) != len(param_names):
        raise ValueError(f"curve_fit: p0 has {np.size(p0)} values but the model has "
                         f"{len(param_names)} parameters ({', '.join(param_names)})")
    return y
