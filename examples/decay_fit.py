"""Exponential decay with error bars: LM fit, standard errors and a 95 % confidence band.

    y = a*exp(-b*t) + c + noise        (40 seeded samples, noise sd 0.25)

``sg.least_squares`` fits the residual ``a*exp(-b*t) + c - y`` (Levenberg–Marquardt on the
fused normal equations) and reports the covariance ``s² (JᵀJ)⁻¹``. The curve itself is compiled
as a model (``sg.compile(a*exp(-b*t) + c)``): ``model(x, t=grid)`` draws the fit and
``model.jacobian(x, t=grid)`` gives the exact gradient ``g(t)`` of the curve in the parameters,
so the band is the delta method ``var(ŷ(t)) = g(t)ᵀ cov g(t)`` with no re-implementation.

Run:  python examples/decay_fit.py [OUT_DIR]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

import symgrad as sg

a, b, c = sg.params("a b c")
t, y = sg.data("t y")
MODEL = a * sg.exp(-b * t) + c
TRUE = (4.0, 0.45, 0.6)
Z95 = 1.959963984540054


def decay_data(seed: int = 0, n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Seeded samples of the decay on 0 <= t <= 10."""
    rng = np.random.default_rng(seed)
    tt = np.sort(rng.uniform(0, 10, n))
    return tt, TRUE[0] * np.exp(-TRUE[1] * tt) + TRUE[2] + 0.25 * rng.standard_normal(n)


def band(model, fit, tt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Model values and their standard errors along ``tt`` (delta method with ``fit.cov``)."""
    G = model.jacobian(fit.x, t=tt)  # (len(tt), 3): the exact gradient of the curve
    return model(fit.x, t=tt), np.sqrt(np.einsum("ij,jk,ik->i", G, fit.cov, G))


def main(out_dir: str | Path) -> dict:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tt, yy = decay_data()
    fit = sg.least_squares(MODEL - y, [1.0, 0.1, 0.0], params=[a, b, c],
                           data={"t": tt, "y": yy})
    print(fit.summary())
    model = sg.compile(MODEL, [a, b, c])  # the fitted curve, packed like fit.x
    grid = np.linspace(0, 10, 300)
    yhat, se = band(model, fit, grid)
    truth = TRUE[0] * np.exp(-TRUE[1] * grid) + TRUE[2]
    covered = float(np.mean(np.abs(truth - yhat) <= Z95 * se))

    from symgrad import plot

    fig = plot.figure(1, size=(6.5, 4.5))
    ax = fig.axes[0]
    ax.plot(tt, yy, "o", ms=3.5, color="0.35", label="data")
    ax.fill_between(grid, yhat - Z95 * se, yhat + Z95 * se, alpha=0.3,
                    label="95% confidence band (delta method)")
    ax.plot(grid, yhat, lw=2, label="LM fit")
    ax.plot(grid, truth, "k--", lw=1, label="true curve")
    est = ", ".join(f"{n} = {v:.3f} ± {s:.3f}" for n, v, s in
                    zip(fit.params, fit.x, fit.stderr, strict=True))
    ax.set(xlabel="t", ylabel="y", title=f"a·exp(−b·t) + c:  {est}")
    ax.title.set_fontsize(8.5)
    ax.legend()
    fig_path = plot.save(fig, out / "decay_fit.png")
    print(f"figure: {fig_path}; the band covers the true curve on {covered:.0%} of the grid")
    return {"x": fit.x, "stderr": fit.stderr, "cov": fit.cov, "nfev": fit.nfev,
            "success": fit.success, "sigma": fit.sigma, "covered": covered,
            "band_width": float(np.mean(2 * Z95 * se)), "figures": [str(fig_path)]}


if __name__ == "__main__":
    argv = sys.argv[1:]
    main(Path(argv[0]) if argv else Path(tempfile.mkdtemp(prefix="symgrad-example-")))
