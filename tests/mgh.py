"""Classic unconstrained test problems (Moré, Garbow & Hillstrom 1981) as symgrad losses.

J. J. Moré, B. S. Garbow, K. E. Hillstrom, "Testing unconstrained optimization software",
ACM TOMS 7 (1981) 17-41. Each problem is a sum of squares ``sum f_i(x)^2`` written with SymPy
(data points as constants), its standard starting point and the known minimum value ``f*``
(the paper's; for Freudenstein–Roth and Jennrich–Sampson the local minimum that local methods
reach from the standard start is listed too, as ``local``).

A run *solves* a problem when it ends with ``|g| < 1e-6`` (a stationary point) or with
``|f - f*| <= 1e-8 * max(1, |f*|)`` (see :func:`solved`).

Used by tests/test_second_order.py and benchmarks/second_order.py.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import sympy as sp

import symgrad as sg

GTOL = 1e-6
FTOL = 1e-8


@dataclass(frozen=True)
class Problem:
    name: str
    build: Callable[[], sp.Expr]
    x0: tuple[float, ...]
    fstar: float


def _ss(terms) -> sp.Expr:
    return sp.Add(*[t**2 for t in terms])


def rosenbrock():
    x1, x2 = sg.params("x1 x2")
    return _ss([10 * (x2 - x1**2), 1 - x1])


def freudenstein_roth():
    x1, x2 = sg.params("x1 x2")
    return _ss([-13 + x1 + ((5 - x2) * x2 - 2) * x2, -29 + x1 + ((x2 + 1) * x2 - 14) * x2])


def powell_badly_scaled():
    x1, x2 = sg.params("x1 x2")
    return _ss([10**4 * x1 * x2 - 1, sp.exp(-x1) + sp.exp(-x2) - sp.Rational(10001, 10000)])


def brown_badly_scaled():
    x1, x2 = sg.params("x1 x2")
    return _ss([x1 - 10**6, x2 - sp.Rational(2, 10**6), x1 * x2 - 2])


def beale():
    x1, x2 = sg.params("x1 x2")
    ys = [sp.Rational(3, 2), sp.Rational(9, 4), sp.Rational(21, 8)]
    return _ss([y - x1 * (1 - x2**i) for i, y in enumerate(ys, 1)])


def jennrich_sampson():
    x1, x2 = sg.params("x1 x2")
    return _ss([2 + 2 * i - (sp.exp(i * x1) + sp.exp(i * x2)) for i in range(1, 11)])


def helical_valley():
    x1, x2, x3 = sg.params("x1 x2 x3")
    theta = sp.atan2(x2, x1) / (2 * sp.pi)  # = MGH's theta on the path from (-1, 0, 0)
    return _ss([10 * (x3 - 10 * theta), 10 * (sp.sqrt(x1**2 + x2**2) - 1), x3])


BARD_Y = (0.14, 0.18, 0.22, 0.25, 0.29, 0.32, 0.35, 0.39, 0.37, 0.58, 0.73, 0.96, 1.34, 2.10,
          4.39)


def bard():
    x1, x2, x3 = sg.params("x1 x2 x3")
    terms = []
    for i, y in enumerate(BARD_Y, 1):
        u, v = i, 16 - i
        terms.append(sp.Float(y) - (x1 + u / (v * x2 + min(u, v) * x3)))
    return _ss(terms)


GAUSS_Y = (0.0009, 0.0044, 0.0175, 0.0540, 0.1295, 0.2420, 0.3521, 0.3989, 0.3521, 0.2420,
           0.1295, 0.0540, 0.0175, 0.0044, 0.0009)


def gaussian():
    x1, x2, x3 = sg.params("x1 x2 x3")
    return _ss([x1 * sp.exp(-x2 * (sp.Rational(8 - i, 2) - x3) ** 2 / 2) - sp.Float(y)
                for i, y in enumerate(GAUSS_Y, 1)])


MEYER_Y = (34780, 28610, 23650, 19630, 16370, 13720, 11540, 9744, 8261, 7030, 6005, 5147, 4427,
           3820, 3307, 2872)


def meyer():
    x1, x2, x3 = sg.params("x1 x2 x3")
    return _ss([x1 * sp.exp(x2 / (45 + 5 * i + x3)) - y for i, y in enumerate(MEYER_Y, 1)])


def box3d():
    x1, x2, x3 = sg.params("x1 x2 x3")
    terms = []
    for i in range(1, 11):
        t = sp.Rational(i, 10)
        terms.append(sp.exp(-t * x1) - sp.exp(-t * x2) - x3 * (sp.exp(-t) - sp.exp(-10 * t)))
    return _ss(terms)


def powell_singular():
    x1, x2, x3, x4 = sg.params("x1 x2 x3 x4")
    return _ss([x1 + 10 * x2, sp.sqrt(5) * (x3 - x4), (x2 - 2 * x3) ** 2,
                sp.sqrt(10) * (x1 - x4) ** 2])


def wood():
    x1, x2, x3, x4 = sg.params("x1 x2 x3 x4")
    return (100 * (x1**2 - x2) ** 2 + (x1 - 1) ** 2 + (x3 - 1) ** 2 + 90 * (x3**2 - x4) ** 2
            + sp.Rational(101, 10) * ((x2 - 1) ** 2 + (x4 - 1) ** 2)
            + sp.Rational(198, 10) * (x2 - 1) * (x4 - 1))


KOWALIK_Y = (0.1957, 0.1947, 0.1735, 0.1600, 0.0844, 0.0627, 0.0456, 0.0342, 0.0323, 0.0235,
             0.0246)
KOWALIK_U = (4.0, 2.0, 1.0, 0.5, 0.25, 0.167, 0.125, 0.1, 0.0833, 0.0714, 0.0625)


def kowalik_osborne():
    x1, x2, x3, x4 = sg.params("x1 x2 x3 x4")
    return _ss([sp.Float(y) - x1 * (u * u + u * x2) / (u * u + u * x3 + x4)
                for y, u in zip(KOWALIK_Y, KOWALIK_U, strict=True)])


def brown_dennis():
    x1, x2, x3, x4 = sg.params("x1 x2 x3 x4")
    terms = []
    for i in range(1, 21):
        t = sp.Rational(i, 5)
        terms.append((x1 + t * x2 - sp.exp(t)) ** 2 + (x3 + x4 * sp.sin(t) - sp.cos(t)) ** 2)
    return _ss(terms)


def extended_rosenbrock(n: int = 10):
    def build():
        x = sg.params(" ".join(f"x{i}" for i in range(1, n + 1)))
        terms = []
        for j in range(0, n, 2):
            terms += [10 * (x[j + 1] - x[j] ** 2), 1 - x[j]]
        return _ss(terms)
    return build


def trigonometric(n: int = 10):
    def build():
        x = sg.params(" ".join(f"x{i}" for i in range(1, n + 1)))
        c = sp.Add(*[sp.cos(xj) for xj in x])
        return _ss([n - c + i * (1 - sp.cos(x[i - 1])) - sp.sin(x[i - 1])
                    for i in range(1, n + 1)])
    return build


#: name, builder, standard start, f* (MGH). 17 problems; TEST_PROBLEMS is the faster subset.
PROBLEMS: tuple[Problem, ...] = (
    Problem("rosenbrock", rosenbrock, (-1.2, 1.0), 0.0),
    Problem("freudenstein_roth", freudenstein_roth, (0.5, -2.0), 0.0),
    Problem("powell_badly_scaled", powell_badly_scaled, (0.0, 1.0), 0.0),
    Problem("brown_badly_scaled", brown_badly_scaled, (1.0, 1.0), 0.0),
    Problem("beale", beale, (1.0, 1.0), 0.0),
    Problem("jennrich_sampson", jennrich_sampson, (0.3, 0.4), 124.36218235561473),
    Problem("helical_valley", helical_valley, (-1.0, 0.0, 0.0), 0.0),
    Problem("bard", bard, (1.0, 1.0, 1.0), 8.2148773065e-3),
    Problem("gaussian", gaussian, (0.4, 1.0, 0.0), 1.127932769618e-8),
    Problem("meyer", meyer, (0.02, 4000.0, 250.0), 87.945855170395831),
    Problem("box3d", box3d, (0.0, 10.0, 20.0), 0.0),
    Problem("powell_singular", powell_singular, (3.0, -1.0, 0.0, 1.0), 0.0),
    Problem("wood", wood, (-3.0, -1.0, -3.0, -1.0), 0.0),
    Problem("kowalik_osborne", kowalik_osborne, (0.25, 0.39, 0.415, 0.39), 3.0750560385e-4),
    Problem("brown_dennis", brown_dennis, (25.0, 5.0, -5.0, -1.0), 85822.2016263563),
    Problem("extended_rosenbrock_10", extended_rosenbrock(10), (-1.2, 1.0) * 5, 0.0),
    Problem("trigonometric_10", trigonometric(10), (0.1,) * 10, 0.0),
)

BY_NAME = {p.name: p for p in PROBLEMS}


def solved(fstar: float, f: float, g: np.ndarray) -> bool:
    """``|g| < GTOL`` or ``|f - f*| <= FTOL * max(1, |f*|)`` (f* to the paper's digits)."""
    gn = math.sqrt(float(np.dot(g, g)))
    if math.isfinite(gn) and gn < GTOL:
        return True
    return math.isfinite(f) and abs(f - fstar) <= FTOL * max(1.0, abs(fstar))
