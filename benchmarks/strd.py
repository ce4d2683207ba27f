"""NIST StRD nonlinear regression: LRE of symgrad's least squares next to SciPy's ``lm``.

    python benchmarks/strd.py [--kernel reference|compiled]

27 certified problems (tests/data/strd/), two starts each, tolerances 1e-15 for everyone
(max_nfev 2000). Prints per start the LRE (log relative error of the worst parameter, 11 =
every certified digit) of ``method="lm"`` (fused normal equations), ``method="precise"``
(streamed QR), SciPy ``least_squares(method="lm")`` with the same exact Jacobian, and the
stderr LRE of the precise fit against the certified standard deviations; then the means.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
from scipy.optimize import least_squares as scipy_lsq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import strd  # noqa: E402

import symgrad as sg  # noqa: E402

TOL = {"xtol": 1e-15, "ftol": 1e-15, "gtol": 1e-15, "max_nfev": 2000}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kernel", default="reference", choices=("reference", "compiled"))
    args = ap.parse_args(argv)
    if args.kernel == "compiled":
        try:
            from symgrad.lsq import compile_residuals as make
        except ImportError:
            print("compiled kernel not available (symgrad.lsq.compile_residuals)")
            return 0
    else:
        make = sg.lsq.ReferenceResiduals
    print(f"{'problem':<10} {'start':>5} {'lm':>6} {'precise':>8} {'scipy lm':>9} "
          f"{'stderr':>7}")
    cols: dict[str, list[float]] = {"lm": [], "precise": [], "scipy": []}
    for name in strd.MODELS:
        pb = strd.load(name)
        k = make(pb.resid, pb.params)
        fun, jac = sg.lsq.to_scipy(k, pb.data)
        for s, x0 in enumerate(pb.starts, 1):
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                lm = sg.least_squares(k, x0, data=pb.data, method="lm", **TOL)
                pr = sg.least_squares(k, x0, data=pb.data, method="precise", **TOL)
                sp = scipy_lsq(fun, x0, jac=jac, method="lm", **TOL)
            row = [strd.lre(lm.x, pb.cert), strd.lre(pr.x, pb.cert), strd.lre(sp.x, pb.cert)]
            for key, v in zip(cols, row, strict=True):
                cols[key].append(v)
            print(f"{name:<10} {s:>5} {row[0]:6.2f} {row[1]:8.2f} {row[2]:9.2f} "
                  f"{strd.lre(pr.stderr, pb.cert_sd):7.2f}")
    print(f"{'mean':<16} {np.mean(cols['lm']):6.2f} {np.mean(cols['precise']):8.2f} "
          f"{np.mean(cols['scipy']):9.2f}")
    print("starts with LRE < 4: " + ", ".join(
        f"{k} {sum(v < 4 for v in vals)}" for k, vals in cols.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
