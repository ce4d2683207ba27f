"""``symgrad fit``: a residual (or model) string and a CSV -> estimates with standard errors.

    symgrad fit "a*exp(-b*t) + c - y" data.csv --p0 a=1 b=0.1 c=0
    symgrad fit "a*exp(-b*t) + c" data.csv --response y --p0 1,0.1,0 --loss soft_l1

The string is parsed safely (:mod:`symgrad.lang.parse`); every name that is a column of the
data file is data (or exactly the ``--data`` names), the others are parameters (``--params`` to
choose the order). Parameters not given in ``--p0`` start at 1 (as ``curve_fit``). A name that
looks like a misspelt column the residual does not read (``tt`` for ``t``) is an error, and so
is a parameter the data cannot determine (exit status 1, after the table). Columns the
residual does not use are ignored (their names need not be valid in an expression).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable

import numpy as np

import symgrad as sg

from ..cliargs import CLIError, _names, parse_vector
from ..columns import check_column_names, closest
from ..datafile import read_data_file
from ..lang.parse import names_in, param_names, parse_loss
from ..lang.symbols import Param
from .predict import check_output, split_response, write_predictions
from .result import UnidentifiableWarning

__all__ = ["MAX_PARAMS", "add_parser", "parse_p0", "run"]

#: Most parameters ``symgrad fit`` takes (the kernel then compiles in seconds; see
#: benchmarks/lsq_compile.py).
MAX_PARAMS = 100


def parse_p0(items: list[str] | None, names: list[str]) -> np.ndarray:
    """``["a=1", "b=0.1"]`` or ``["1,0.1,0"]`` -> the start vector in the order of ``names``."""

    x = np.ones(len(names))
    if not items:
        return x
    if all("=" not in it for it in items):
        v = parse_vector(" ".join(items), "--p0")
        if v.size != len(names):
            raise CLIError(f"--p0 has {v.size} values but the model has {len(names)} "
                           f"parameters ({', '.join(names)})")
        return v
    seen: set[str] = set()
    for it in items:
        name, eq, val = it.partition("=")
        name = name.strip()
        if not eq or name not in names:
            raise CLIError(f"--p0 {it!r}: write NAME=VALUE with NAME one of {', '.join(names)}")
        if name in seen:
            raise CLIError(f"--p0 gives {name} twice")
        seen.add(name)
        v = parse_vector(val, f"--p0 {name}")
        if v.size != 1:  # a=1,5 dropped the 5
            raise CLIError(f"--p0 {it!r}: one value per NAME=VALUE ({name} is a scalar)")
        x[names.index(name)] = v[0]
    return x


def _columns_of(text: str, cols: dict, a: argparse.Namespace) -> list[str]:
    """The data names of the residual: --data, else the file's columns the residual reads.

    A name that is not a column is a parameter; one that looks like a misspelt column the
    residual does not read (``tt`` for ``t``) is an error naming it and the columns."""
    source = str(a.data_file)
    if a.response is not None and a.response not in cols:
        close = closest(a.response, list(cols))
        raise CLIError(f"--response {a.response!r} is not a column of {source} (columns: "
                       f"{', '.join(cols)})" + (f": did you mean '{close}'?" if close else ""))
    check_column_names(text, list(cols), source, _names(a.data), a.params is not None)
    if a.data is not None:  # the response is data too (it was fitted as a parameter)
        names = _names(a.data)
        return [*names, a.response] if a.response not in (None, *names) else names
    given = _names(a.params) or []
    used = names_in(text)
    return [c for c in cols if c in used and c not in given]


def run(a: argparse.Namespace, out: Callable[[str], None] = print) -> int:
    """Fit and print the table; exit status 0 if the fit converged, 1 otherwise (and when the
    data cannot determine a parameter)."""
    cols = read_data_file(a.data_file)
    if a.predict:  # before the fit, not after it
        try:
            check_output(a.predict, a.data_file, a.force)
        except FileExistsError as exc:
            raise CLIError(str(exc)) from None
    text = a.model if a.response is None else f"({a.model}) - ({a.response})"
    dnames = _columns_of(text, cols, a)
    expr = parse_loss(text, params=a.params, data=dnames)
    names = param_names(text, a.params, dnames)
    if len(names) > MAX_PARAMS:
        raise CLIError(f"the residual has {len(names)} parameters; symgrad fit takes at most "
                       f"{MAX_PARAMS} (compile time, and the {len(names)}x{len(names)} normal "
                       "equations): use sg.least_squares from Python for more")
    used = sorted(s.name for s in expr.free_symbols if s.name in dnames)
    if not used:
        raise CLIError(f"the model uses none of the data columns ({', '.join(cols)})")
    x0 = parse_p0(a.p0, names)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = sg.least_squares(expr, x0, params=[Param(n) for n in names],
                               data={k: cols[k] for k in used}, method=a.method, loss=a.loss,
                               f_scale=a.f_scale, max_nfev=a.max_nfev)
    for w in caught:
        if not issubclass(w.category, UnidentifiableWarning):
            print(f"symgrad fit: warning: {w.message}", file=sys.stderr)
    out(f"model: {text}   ({cols[used[0]].size} samples)")
    out(fit.summary())
    if a.predict:
        params = [Param(n) for n in names]
        response = (parse_loss(a.response, data=dnames) if a.response is not None
                    else split_response(expr, dnames)[1])
        try:
            out(write_predictions(a.predict, expr, response, params, fit.x, cols, a.data_file,
                                  a.force))
        except FileExistsError as exc:
            raise CLIError(str(exc)) from None
    if fit.unidentifiable:
        print(f"symgrad fit: error: the data cannot determine the parameter(s) "
              f"{', '.join(fit.unidentifiable)} (the Jacobian is rank deficient at the "
              f"solution). Every name of the residual that is not a column of {a.data_file} "
              f"(columns: {', '.join(cols)}) is a parameter: check for a misspelt column, "
              "or remove the redundant parameters", file=sys.stderr)
        return 1
    return 0 if fit.success else 1


def add_parser(sub) -> argparse.ArgumentParser:
    """The ``fit`` sub-command of the ``symgrad`` parser."""
    f = sub.add_parser("fit", help="nonlinear least squares: estimates with standard errors")
    f.add_argument("model", metavar="RESIDUAL", help="residual expression in parameters and "
                   "data columns, e.g. \"a*exp(-b*t) + c - y\" (or the model with --response)")
    f.add_argument("data_file", metavar="DATA", help=".csv with a header row, or .npz")
    f.add_argument("--p0", nargs="+", help="start: NAME=VALUE ... or a comma list (default 1)")
    f.add_argument("--response", help="data column the model is fitted to (residual = "
                   "model - RESPONSE)")
    f.add_argument("--params", help="parameter names in order (default: the names that are "
                   "not data columns, sorted)")
    f.add_argument("--data", metavar="NAMES", help="data column names (default: the file's "
                   "columns the residual uses)")
    f.add_argument("--method", default="lm", choices=("lm", "precise", "gn"))
    f.add_argument("--loss", default="linear",
                   choices=("linear", "huber", "soft_l1", "cauchy", "arctan"))
    f.add_argument("--f-scale", type=float, default=1.0, help="robust loss scale")
    f.add_argument("--max-nfev", type=int, help="maximum number of evaluations")
    f.add_argument("--predict", metavar="OUT.csv", help="write the fitted curve (the model, "
                   "i.e. the residual without its response) and the residuals at the data")
    f.add_argument("--force", action="store_true", help="replace an existing --predict file")
    f.set_defaults(run=run)
    return f
