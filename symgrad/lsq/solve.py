"""The default strategy around the solvers: a second opinion when a fit stops in doubt.

A method that stops on its tests may have stopped short of a minimum:

* ``lm``/``gn`` (normal equations) where JᵀJ is numerically singular (also on the gtol test:
  a Jacobian that vanishes, as ``gn`` finds on MGH10's plateau, passes it): forming JᵀJ squares the
  condition number, so a direction the data determine can fall below the rank cut (NIST's
  MGH17 from its first start: ``lm`` ends in a false minimum, as SciPy's ``lm`` does; the QR
  model resolves it);
* any method where the gradient is not small on the problem's scale (:func:`~.lm.stalled`:
  a plateau such as BoxBOD's from ``precise``).

Then the alternative method (``lm`` <-> ``precise``, ``gn`` -> ``precise``) runs from ``x0``
on the rest of the evaluation budget, and the fit with the lower cost is kept. A fit that still
stalls is reported with status :data:`~.lm.STALLED` (``success=False``), never as converged;
one whose second opinion cannot run (Dask columns give no rows for the QR model) and is still in
doubt, with :data:`~.lm.UNCHECKED` (``success=False``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .lm import (
    STALLED,
    UNCHECKED,
    Linearization,
    Outcome,
    default_max_nfev,
    gauss_newton,
    levenberg_marquardt,
    polish,
    stalled,
)
from .objective import Objective

__all__ = ["ALTERNATIVE", "METHODS", "solve"]

METHODS = {"lm": ("normal", levenberg_marquardt), "gn": ("normal", gauss_newton),
           "precise": ("qr", levenberg_marquardt)}
ALTERNATIVE = {"lm": "precise", "precise": "lm", "gn": "precise"}


def _doubtful(out: Outcome, obj: Objective, lin0: Linearization, tol: float) -> bool:
    if out.lin.model is None:
        return False
    if out.status == STALLED:  # Gauss–Newton's line search found no lower cost
        return True
    if out.status not in (1, 2, 3, 4):
        return False
    if obj.mode == "normal" and out.lin.model.rank_cut() < out.x.size:
        return True
    return out.status != 1 and stalled(out.lin, lin0, out.active, out.x, tol)


def solve(obj: Objective, method: str, x0: np.ndarray, lin0: Linearization, *,
          xtol: float, ftol: float, gtol: float, max_nfev: int | None, x_scale: Any,
          bounds: tuple | None, refine: bool, fallback: bool = True
          ) -> tuple[Outcome, Objective]:
    """Run ``method`` (and its alternative if the first stops in doubt); polish; the outcome
    and the objective whose model it carries."""
    budget = default_max_nfev(x0.size) if max_nfev is None else max_nfev
    tol = max(1e-3, float(np.sqrt(max(ftol, xtol))))
    opts = dict(xtol=xtol, ftol=ftol, gtol=gtol, x_scale=x_scale, bounds=bounds)
    out = METHODS[method][1](obj, x0, max_nfev=budget, lin0=lin0, **opts)
    unchecked = False
    if fallback and budget > out.nfev and _doubtful(out, obj, lin0, tol):
        alt = ALTERNATIVE[method]
        mode, solver = METHODS[alt]
        other = obj.with_mode(mode)
        try:
            start = lin0 if mode == obj.mode else other.linearize(x0)
            # its count includes the start (one more evaluation when the model differs)
            second = solver(other, x0, max_nfev=budget - out.nfev + (mode == obj.mode),
                            lin0=start, **opts)
        except NotImplementedError:  # Dask columns: no streamed rows for the QR model
            second, unchecked = None, True
        if second is not None:
            nfev = out.nfev + second.nfev - (mode == obj.mode)
            if second.lin.cost < out.lin.cost and second.status != 0:
                out, obj = second, other
            out.nfev = nfev
    if refine:
        out = polish(obj, out, bounds, max_nfev=budget)
    if out.status in (2, 3, 4) and stalled(out.lin, lin0, out.active, out.x, tol):
        out.status = STALLED
    if unchecked and _doubtful(out, obj, lin0, tol):  # never a doubtful stop as a success
        out.status = UNCHECKED
    return out, obj
