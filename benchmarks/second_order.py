"""L-BFGS and Newton trust region against SciPy on the Moré–Garbow–Hillstrom problems.

    python benchmarks/second_order.py [--steps 2000]

For each problem of tests/mgh.py (17 classic unconstrained problems, standard starting points),
compiled once with ``sg.compile``, runs from the same exact derivatives:

- ``sg.minimize(..., optimizer=sg.optim.lbfgs(), gtol=1e-6)`` (m = 10, strong Wolfe);
- ``sg.minimize(..., optimizer=sg.optim.newton(), gtol=1e-6)`` (Steihaug–Toint CG on exact HVPs);
- ``scipy.optimize.minimize(method="L-BFGS-B", options=dict(gtol=1e-6, ftol=1e-15))``;
- ``scipy.optimize.minimize(method="trust-ncg", hessp=..., options=dict(gtol=1e-6))``,

and, with DEFAULT arguments (no ``gtol``, no ``steps``), L-BFGS and Newton once more, with the
status they report (issue 25: ``success`` must say what happened).

SciPy through ``sg.scipy_objective`` (one value-and-gradient evaluation per point). Prints
per problem and method: solved (``|g| < 1e-6`` or ``|f - f*| <= 1e-8 max(1, |f*|)``), iterations,
value-and-gradient evaluations (nfev), Hessian-vector products (nhev), the final loss, and the
totals. SciPy's status is not used: the same criterion judges every final point.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import mgh  # noqa: E402
from report import record  # noqa: E402

import symgrad as sg  # noqa: E402


def run_symgrad(f, p, method: str, steps: int) -> tuple[bool, int, int, int, float]:
    opt = sg.optim.lbfgs() if method == "lbfgs" else sg.optim.newton()
    r = sg.minimize(f, p.x0, optimizer=opt, gtol=1e-6, steps=steps)
    return mgh.solved(p.fstar, r.fun, r.jac), r.nit, r.nfev, r.nhev, r.fun


def run_scipy(f, p, method: str, steps: int) -> tuple[bool, int, int, int, float]:
    import scipy.optimize as so

    obj = sg.scipy_objective(f)
    count = [0]

    def hessp(x, v):
        count[0] += 1
        return obj.hessp(x, v)

    x0 = np.array(p.x0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if method == "L-BFGS-B":
            r = so.minimize(obj.fun, x0, jac=obj.jac, method=method,
                            options={"maxiter": steps, "gtol": 1e-6, "ftol": 1e-15})
        else:
            r = so.minimize(obj.fun, x0, jac=obj.jac, hessp=hessp, method=method,
                            options={"maxiter": steps, "gtol": 1e-6})
    g = obj.jac(r.x)
    return mgh.solved(p.fstar, float(r.fun), g), int(r.nit), obj.nfev, count[0], float(r.fun)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2000)
    args = ap.parse_args()
    methods = [("lbfgs", run_symgrad), ("newton", run_symgrad), ("L-BFGS-B", run_scipy),
               ("trust-ncg", run_scipy)]
    totals = {m: [0, 0, 0] for m, _ in methods}  # solved, nfev, nhev
    defaults: dict[str, list] = {"lbfgs": [], "newton": []}  # (solved, success) per problem
    print(f"{'problem':24s} {'method':10s} {'solved':>6s} {'nit':>5s} {'nfev':>5s} {'nhev':>5s} "
          f"{'final f':>14s}")
    for p in mgh.PROBLEMS:
        f = sg.compile(p.build())
        for m, run in methods:
            ok, nit, nfev, nhev, fun = run(f, p, m, args.steps)
            t = totals[m]
            t[0] += ok
            t[1] += nfev
            t[2] += nhev
            print(f"{p.name:24s} {m:10s} {'yes' if ok else 'NO':>6s} {nit:5d} {nfev:5d} "
                  f"{nhev:5d} {fun:14.8g}")
        for m in ("lbfgs", "newton"):
            opt = sg.optim.lbfgs() if m == "lbfgs" else sg.optim.newton()
            r = sg.minimize(f, p.x0, optimizer=opt)
            ok = (float(np.linalg.norm(r.jac)) < 1e-4
                  or abs(r.fun - p.fstar) <= mgh.FTOL * max(1.0, abs(p.fstar)))
            defaults[m].append((ok, r.success))
            print(f"{p.name:24s} {m + '*':10s} {'yes' if ok else 'NO':>6s} {r.nit:5d} "
                  f"{r.nfev:5d} {r.nhev:5d} {r.fun:14.8g}  {r.status}: {r.message[:70]}")
    print(f"\ntotals over {len(mgh.PROBLEMS)} problems (nfev/nhev summed over all runs):")
    for m, (ok, nfev, nhev) in totals.items():
        print(f"  {m:10s} solved {ok:2d}  nfev {nfev:6d}  nhev {nhev:6d}")
        record("second_order", f"MGH problems solved (of {len(mgh.PROBLEMS)}), {m}, gtol=1e-6",
               ok, target=len(mgh.PROBLEMS) if m in ("lbfgs", "newton") else None,
               better="higher")
    print("\n* default arguments (solved here: |g| < 1e-4 or f within 1e-8 of f*):")
    for m, runs in defaults.items():
        print(f"  {m:10s} success=True {sum(s for _, s in runs):2d}, solved "
              f"{sum(o for o, _ in runs):2d}, success == solved on {sum(o == s for o, s in runs)}"
              f" of {len(runs)}")
        record("second_order", f"MGH problems with success=True, {m}, default arguments",
               sum(s for _, s in runs), target=len(runs), better="higher")


if __name__ == "__main__":
    main()
