"""``symgrad fit --predict OUT.csv``: the fitted curve at the data, from the compiled model.

The model is the residual without its response: ``model`` with ``--response y``, or, for a
residual written ``model - y`` with ``y`` a column that appears nowhere else, ``model``. The
file holds the data columns the model reads, ``fitted`` (when there is a response) and
``residual`` (``fitted_``/``residual_`` when a data column has the name), one row per sample.
It is written atomically and never over an existing file unless ``--force``, nor over the data
file.

>>> import symgrad as sg
>>> a = sg.params("a"); t, y = sg.data("t y")
>>> split_response(a*t - y, ["t", "y"])
(t*a, y)
>>> split_response(a*t - y*t, ["t", "y"])
(None, None)
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import sympy as sp

import symgrad as sg

from ..build.cache import write_atomic

__all__ = ["check_output", "split_response", "write_predictions"]


def split_response(resid: sp.Expr, data_names: list[str]
                   ) -> tuple[sp.Expr | None, sp.Symbol | None]:
    """``(model, y)`` when ``resid`` is ``model - y`` for a data column ``y`` that ``model`` does
    not read, else ``(None, None)``."""
    if not isinstance(resid, sp.Add):
        return None, None
    found = [(term, s) for term in resid.args for s in term.free_symbols
             if s.name in data_names and term == -s]
    if len(found) != 1:
        return None, None
    term, y = found[0]
    model = resid - term
    return (None, None) if y in model.free_symbols else (model, y)


def write_predictions(path: str, resid: sp.Expr, response: sp.Expr | None, params, x,
                      cols: dict[str, np.ndarray], data_file: str, force: bool) -> str:
    """Evaluate the fitted model (and the residual) with compiled model kernels and write the
    CSV; returns a line saying what was written. FileExistsError when ``path`` is the data file,
    or exists and ``force`` is false."""
    out = check_output(path, data_file, force)
    model = None
    if response is not None:
        model = resid + response  # resid = model - response
    names = sorted({s.name for s in resid.free_symbols} & set(cols))
    n = len(cols[names[0]])  # the residual reads data (the command checks it)
    table: dict[str, np.ndarray] = {}
    if model is not None:
        inputs = sorted({s.name for s in model.free_symbols} & set(cols))
        table |= {k: cols[k] for k in inputs}
        table[_fresh("fitted", table)] = _evaluate(sg, model, params, x, cols, inputs, n)
    else:
        table |= {k: cols[k] for k in names}
    residual = _fresh("residual", table)
    table[residual] = _evaluate(sg, resid, params, x, cols, names, n)
    buf = io.StringIO()
    np.savetxt(buf, np.column_stack(list(table.values())), delimiter=",",
               header=",".join(table), comments="", fmt="%.17g")
    write_atomic(out, buf.getvalue())
    what = "the fitted curve and the residuals" if model is not None else "the residuals"
    return f"wrote {what} at the {n} samples to {out} (columns {', '.join(table)})"


def check_output(path: str, data_file: str, force: bool) -> Path:
    """The ``--predict`` path, or FileExistsError when it is the data file, or exists and
    ``force`` is false (checked before the fit, and again before writing)."""
    out = Path(path)
    if out.resolve() == Path(data_file).resolve():
        raise FileExistsError(f"--predict {path}: that is the data file; choose another name")
    if out.exists() and not force:
        raise FileExistsError(f"--predict {path} exists: pass --force to replace it")
    return out


def _fresh(name: str, table: dict) -> str:
    """``name``, or ``name_`` ... when a data column of the table has it (a column named
    ``fitted`` was replaced by the fitted values)."""
    while name in table:
        name += "_"
    return name


def _evaluate(sg, expr, params, x, cols, names, n: int) -> np.ndarray:
    """The ``n`` per-sample values of ``expr`` at the fitted ``x`` (a compiled model kernel)."""
    if not names:  # a constant model (``c - y``): one value for every sample
        return np.full(n, float(expr.subs(dict(zip(params, x, strict=True)))))
    model = sg.compile(expr, params=list(params))
    return np.asarray(model(np.asarray(x, dtype=np.float64), **{k: cols[k] for k in names}))
