"""The NIST StRD nonlinear regression problems: data files, models, certified values, LRE.

The 27 ``.dat`` files (NIST's format, unchanged) live in tests/data/strd/. Each gives two
starting points, certified parameters and standard deviations to 11 digits. The model text
in the files is prose (``exp[-b2*x]``), so the models are written out here once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sympy as sp

DATA = Path(__file__).resolve().parent / "data" / "strd"

_LANCZOS = "b1*exp(-b2*x) + b3*exp(-b4*x) + b5*exp(-b6*x)"
_GAUSS = "b1*exp(-b2*x) + b3*exp(-(x-b4)**2/b5**2) + b6*exp(-(x-b7)**2/b8**2)"
_RATIONAL3 = "(b1 + b2*x + b3*x**2 + b4*x**3)/(1 + b5*x + b6*x**2 + b7*x**3)"
_TWO_PI = "2*pi*x"
#: name -> model of the response (Nelson's response is log(y)), in NIST's difficulty order.
MODELS = {
    "Misra1a": "b1*(1-exp(-b2*x))",
    "Chwirut2": "exp(-b1*x)/(b2+b3*x)",
    "Chwirut1": "exp(-b1*x)/(b2+b3*x)",
    "Lanczos3": _LANCZOS,
    "Gauss1": _GAUSS,
    "Gauss2": _GAUSS,
    "DanWood": "b1*x**b2",
    "Misra1b": "b1*(1-(1+b2*x/2)**(-2))",
    "Kirby2": "(b1 + b2*x + b3*x**2)/(1 + b4*x + b5*x**2)",
    "Hahn1": _RATIONAL3,
    "Nelson": "b1 - b2*x1*exp(-b3*x2)",
    "MGH17": "b1 + b2*exp(-x*b4) + b3*exp(-x*b5)",
    "Lanczos1": _LANCZOS,
    "Lanczos2": _LANCZOS,
    "Gauss3": _GAUSS,
    "Misra1c": "b1*(1-(1+2*b2*x)**(-1/2))",
    "Misra1d": "b1*b2*x/(1+b2*x)",
    "Roszman1": "b1 - b2*x - atan(b3/(x-b4))/pi",
    "ENSO": (f"b1 + b2*cos({_TWO_PI}/12) + b3*sin({_TWO_PI}/12) + b5*cos({_TWO_PI}/b4)"
             f" + b6*sin({_TWO_PI}/b4) + b8*cos({_TWO_PI}/b7) + b9*sin({_TWO_PI}/b7)"),
    "MGH09": "b1*(x**2+x*b2)/(x**2+x*b3+b4)",
    "Thurber": _RATIONAL3,
    "BoxBOD": "b1*(1-exp(-b2*x))",
    "Rat42": "b1/(1+exp(b2-b3*x))",
    "MGH10": "b1*exp(b2/(x+b3))",
    "Eckerle4": "(b1/b2)*exp(-(x-b3)**2/(2*b2**2))",
    "Rat43": "b1/((1+exp(b2-b3*x))**(1/b4))",
    "Bennett5": "b1*(b2+x)**(-1/b3)",
}


@dataclass(frozen=True)
class Problem:
    """One StRD problem: residual expression, parameter symbols, data, starts, certified."""

    name: str
    resid: sp.Expr
    params: list
    data: dict
    starts: tuple[np.ndarray, np.ndarray]
    cert: np.ndarray
    cert_sd: np.ndarray
    rss: float


def _number(text: str) -> float:
    return float(text.replace("E", "e"))


def load(name: str) -> Problem:
    """Read ``tests/data/strd/<name>.dat`` and build the residual ``model - y``."""
    import symgrad as sg

    lines = (DATA / f"{name}.dat").read_text().splitlines()
    rows = [ln.split() for ln in lines]
    pars = [r for r in rows if len(r) >= 6 and r[0].startswith("b") and r[1] == "="]
    start1 = np.array([_number(r[2]) for r in pars])
    start2 = np.array([_number(r[3]) for r in pars])
    cert = np.array([_number(r[4]) for r in pars])
    sd = np.array([_number(r[5]) for r in pars])
    rss = next(_number(r[-1]) for r in rows if r[:3] == ["Residual", "Sum", "of"])
    header = max(i for i, r in enumerate(rows) if r and r[0] == "Data:")
    cols = rows[header][1:]
    table = np.array([[_number(v) for v in r] for r in rows[header + 1:] if r], dtype=float)
    data = {c: table[:, k].copy() for k, c in enumerate(cols)}
    bs = [sg.params(r[0]) for r in pars]
    syms = {c: sg.data(c) for c in cols}
    model = sp.sympify(MODELS[name], locals={**{b.name: b for b in bs}, **syms})
    y = sp.log(syms["y"]) if name == "Nelson" else syms["y"]
    return Problem(name, model - y, bs, data, (start1, start2), cert, sd, rss)


def lre(est: np.ndarray, cert: np.ndarray) -> float:
    """Log relative error of the worst component: -log10(|est - cert| / |cert|), capped at 11
    (the certified digits); 0 for a non-finite or very wrong estimate."""
    est = np.asarray(est, dtype=float)
    if not np.all(np.isfinite(est)):
        return 0.0
    with np.errstate(divide="ignore"):
        rel = np.abs(est - cert) / np.abs(cert)
        vals = np.where(rel == 0, 11.0, -np.log10(rel))
    return float(np.clip(np.min(vals), 0.0, 11.0))
