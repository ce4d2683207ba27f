"""NIST StRD nonlinear regression: LRE of symgrad's least squares next to SciPy's ``lm``.

    python benchmarks/strd.py [--kernel reference|compiled] [--defaults-only]

27 certified problems (tests/data/strd/), two starts each. First with DEFAULT arguments (what
a user gets: ``sg.least_squares(resid, x0, data=...)``, SciPy's ``least_squares(method="lm")``
with its defaults), then with tolerances 1e-15 for everyone (max_nfev 2000). Each table gives
per start the LRE (log relative error of the worst parameter, 11 = every certified digit) of
``method="lm"`` (fused normal equations), ``method="precise"`` (streamed QR), ``"gn"`` and
SciPy's ``lm`` with the same exact Jacobian, the evaluations of ``lm``, and the stderr LRE of
the precise fit against the certified standard deviations; then the means and the number of
starts reaching LRE >= 4.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from scipy.optimize import least_squares as scipy_lsq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import strd  # noqa: E402
from report import record  # noqa: E402

import symgrad as sg  # noqa: E402

TIGHT = {"xtol": 1e-15, "ftol": 1e-15, "gtol": 1e-15, "max_nfev": 2000}
METHODS = ("lm", "precise", "gn")


def table(kernels: dict, title: str, tol: dict) -> None:
    print(f"\n{title}")
    print(f"{'problem':<10} {'start':>5} {'lm':>6} {'precise':>8} {'gn':>6} {'scipy lm':>9} "
          f"{'lm nfev':>8} {'stderr':>7}")
    cols: dict[str, list[float]] = {m: [] for m in (*METHODS, "scipy")}
    t0 = time.perf_counter()
    for name, (pb, k, fun, jac) in kernels.items():
        for s, x0 in enumerate(pb.starts, 1):
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                fits = [sg.least_squares(k, x0, data=pb.data, method=m, **tol) for m in METHODS]
                sp = scipy_lsq(fun, x0, jac=jac, method="lm", **tol)
            row = [strd.lre(f.x, pb.cert) for f in fits] + [strd.lre(sp.x, pb.cert)]
            for key, v in zip(cols, row, strict=True):
                cols[key].append(v)
            print(f"{name:<10} {s:>5} {row[0]:6.2f} {row[1]:8.2f} {row[2]:6.2f} {row[3]:9.2f} "
                  f"{fits[0].nfev:8d} {strd.lre(fits[1].stderr, pb.cert_sd):7.2f}")
    dt = time.perf_counter() - t0
    print(f"{'mean LRE':<16} " + " ".join(f"{np.mean(v):{w}.2f}" for v, w in
                                          zip(cols.values(), (6, 8, 6, 9), strict=True)))
    print(f"{'LRE >= 4':<16} " + " ".join(f"{sum(x >= 4 for x in v):>{w - 3}d}/54" for v, w in
                                          zip(cols.values(), (6, 8, 6, 9), strict=True)))
    print(f"({dt:.1f} s for the table)")
    for key, v in cols.items():
        name = "SciPy lm" if key == "scipy" else key
        record("strd", f"NIST StRD, {title.split(' (')[0].split(',')[0]}: starts with LRE >= 4 "
               f"(of 54), {name}", sum(x >= 4 for x in v),
               target=53 if key in ("lm", "precise") and not tol else None, better="higher")
        record("strd", f"NIST StRD, {title.split(' (')[0].split(',')[0]}: mean LRE, {name}",
               float(np.mean(v)), target=10.2 if key in ("lm", "precise") and tol else None,
               better="higher")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kernel", default="reference", choices=("reference", "compiled"))
    ap.add_argument("--defaults-only", action="store_true")
    args = ap.parse_args(argv)
    make = sg.compile_residuals if args.kernel == "compiled" else sg.lsq.ReferenceResiduals
    kernels = {}
    for name in strd.MODELS:
        pb = strd.load(name)
        k = make(pb.resid, pb.params)
        kernels[name] = (pb, k, *sg.lsq.to_scipy(k, pb.data))
    table(kernels, "DEFAULT arguments (symgrad: method as shown, everything else default; "
          "SciPy: its defaults)", {})
    if not args.defaults_only:
        table(kernels, "Tolerances 1e-15, max_nfev 2000 for everyone", TIGHT)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
