"""Fit a model to 100 million samples that never exist in one place: Dask generates them lazily
on the workers and symgrad reduces each chunk where it is.

    y = a * exp(-b t) + c + noise,    loss = sqrt(mean((a exp(-b t) + c - y)^2))   (the RMSE)

The columns t and y are ``dask.array.random`` arrays (1e8 samples are 1.6 GB; nothing is
persisted, so each evaluation regenerates its chunks from their seeds and frees them). Every
loss and gradient is one map-reduce: each chunk's sums of the residual's square and its
gradient are computed by the compiled kernel on a worker, summed, and the client applies the
square root's chain rule to one row of numbers. L-BFGS (``sg.optim.lbfgs()``) drives the fit.

Without ``--scheduler`` Dask's local threads run it (with Dask's progress bar on the first
evaluation); ``--scheduler tcp://host:8786`` connects to a cluster instead.

Figure: the RMSE per L-BFGS iteration, and the fitted curve over a sample of the data.

Run:  python examples/dask_fit.py [OUT_DIR] [--samples N] [--chunk C] [--scheduler ADDRESS]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

import symgrad as sg

TRUTH = (2.0, 1.3, 0.5)  # a, b, c
NOISE = 0.1


def columns(n: int, chunk: int, seed: int = 0):
    """Lazy Dask columns ``(t, y)``: nothing is computed until a kernel call needs a chunk."""
    import dask.array as da

    rs = da.random.RandomState(seed)
    t = rs.uniform(0.0, 3.0, size=n, chunks=chunk)
    a, b, c = TRUTH
    y = a * da.exp(-b * t) + c + NOISE * rs.standard_normal(size=n, chunks=chunk)
    return t, y


def main(out_dir: str | Path, samples: int = 100_000_000, chunk: int = 2_000_000,
         steps: int = 30, scheduler: str | None = None) -> dict:
    """Fit, print the numbers, write the figure."""
    from dask.diagnostics import ProgressBar

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    client = None
    if scheduler:
        from distributed import Client

        client = Client(scheduler)
    try:
        a, b, c = sg.params("a b c")
        t, y = sg.data("t y")
        f = sg.compile(sg.sqrt(sg.mean((a * sg.exp(-b * t) + c - y) ** 2)))
        tc, yc = columns(samples, chunk)
        fb = f.bind(t=tc, y=yc)  # a DaskKernel: calls map over the chunks
        x0 = np.array([1.0, 1.0, 0.0])
        t0 = time.perf_counter()
        if client is None:
            with ProgressBar():
                loss0 = fb.value(x0)
        else:
            loss0 = fb.value(x0)
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        res = sg.minimize(fb, x0, optimizer=sg.optim.lbfgs(), steps=steps, gtol=1e-9,
                          progress=True)
        fit = time.perf_counter() - t0
        sample_t, sample_y = tc[:2000].compute(), yc[:2000].compute()
    finally:
        if client is not None:
            client.close()
    print(f"{samples:,} samples in {fb.n_chunks} chunks of {chunk:,}, generated on the workers")
    print(f"first evaluation {first:.2f} s (includes compiling); RMSE at x0 {loss0:.4f}")
    print(f"L-BFGS: {res.nit} iterations, {res.nfev} evaluations, {fit:.1f} s "
          f"({fit / max(res.nfev, 1):.2f} s per evaluation over all samples), {res.status}")
    print("fitted a, b, c = " + ", ".join(f"{v:.4f}" for v in res.x)
          + "   (truth " + ", ".join(f"{v}" for v in TRUTH) + ")")
    print(f"final RMSE {res.fun:.5f} (the noise's standard deviation is {NOISE})")
    fig_path = figure(out, res, sample_t, sample_y)
    print(f"figure: {fig_path}")
    return {"x": res.x, "fun": res.fun, "status": res.status, "nit": res.nit,
            "loss0": loss0, "n_chunks": fb.n_chunks, "fit_seconds": fit,
            "figures": [str(fig_path)]}


def figure(out: Path, res, t: np.ndarray, y: np.ndarray) -> Path:
    """RMSE per iteration (left) and the fitted curve over 2,000 samples (right)."""
    from symgrad import plot

    fig = plot.figure(2, size=(5.0, 4.0))
    plot.loss_curves({"RMSE": res}, ax=fig.axes[0], xlabel="L-BFGS iteration",
                     ylabel="RMSE over all samples", title="L-BFGS on Dask chunks")
    ax = fig.axes[1]
    ax.scatter(t, y, s=3, alpha=0.3, color="0.5", label="samples")
    grid = np.linspace(0.0, 3.0, 200)
    a, b, c = res.x
    ax.plot(grid, a * np.exp(-b * grid) + c, color="C1", lw=2, label="fit")
    ax.set(xlabel="t", ylabel="y", title="a exp(-b t) + c")
    ax.legend()
    return plot.save(fig, out / "dask_fit.png")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir", nargs="?", help="output folder (default: a new temporary one)")
    ap.add_argument("--samples", type=int, default=100_000_000)
    ap.add_argument("--chunk", type=int, default=2_000_000)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--scheduler", help="a Dask scheduler address (default: local threads)")
    a = ap.parse_args()
    main(Path(a.out_dir) if a.out_dir else Path(tempfile.mkdtemp(prefix="symgrad-example-")),
         a.samples, a.chunk, a.steps, a.scheduler)
