"""Low-rank matrix factorisation of a ratings-like matrix with missing entries (R ~ U Vᵀ).

    loss = mean over observed (i, j, r) of (U[i] · V[j] - r)²  +  lam (|U|² + |V|²)

on a seeded synthetic problem: a true rank-5 matrix of 300 x 200 plus Gaussian noise, of which a
random 30% of the entries are observed. Each observed entry is one sample: two integer columns
``i``, ``j`` (which row of U, which row of V) and the value ``r``. ``U[i]`` gathers, per sample,
row ``i`` of the parameter ``U``; symgrad derives the adjoint of that gather (a scatter-add into
the gradient of ``U``) and compiles one loop over the entries. The other 70% are held out.

The reference is a truncated SVD at the same rank of the FULL noisy matrix (every entry seen):
its RMSE on the held-out entries is about the noise level, and the factorisation fitted from 30%
of the entries should come close to it.

Figure: the training loss per step, the singular values of the true matrix, of the noisy one and
of U Vᵀ, and the true, observed and reconstructed matrices.

Run:  python examples/matrix_factorisation.py [OUT_DIR] [--steps S] [--rows M] [--cols N]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

import symgrad as sg
from symgrad import optim

RANK = 5
NOISE = 0.3
OBSERVED = 0.3
LAM = 3e-5
LR = 0.02


def synthetic(m: int, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(truth, noisy, mask)``: a rank-``RANK`` m x n matrix with entries of unit variance, the
    same plus N(0, NOISE²) noise, and a boolean mask of the observed entries (``OBSERVED``)."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((m, RANK))
    b = rng.standard_normal((n, RANK))
    truth = a @ b.T / np.sqrt(RANK)
    noisy = truth + NOISE * rng.standard_normal((m, n))
    mask = rng.random((m, n)) < OBSERVED
    return truth, noisy, mask


def model(m: int, n: int, k: int = RANK):
    """The regularised squared error over observed entries, and its parameters ``[U, V]``."""
    U = sg.params("U", shape=(m, k))
    V = sg.params("V", shape=(n, k))
    i, j = sg.data("i j", dtype=int)
    r = sg.data("r")
    loss = sg.mean((sg.sum(U[i] * V[j], axis=0) - r) ** 2) + LAM * (sg.sum(U**2) + sg.sum(V**2))
    return loss, [U, V]


def reference(U: np.ndarray, V: np.ndarray, i, j, r) -> tuple[float, np.ndarray, np.ndarray]:
    """Value and gradients (dU, dV) of the loss by hand with NumPy (``np.add.at`` scatters)."""
    e = np.sum(U[i] * V[j], axis=1) - r
    value = np.mean(e**2) + LAM * (np.sum(U**2) + np.sum(V**2))
    dU, dV = 2 * LAM * U, 2 * LAM * V
    np.add.at(dU, i, (2 / r.size) * e[:, None] * V[j])
    np.add.at(dV, j, (2 / r.size) * e[:, None] * U[i])
    return float(value), dU, dV


def rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a - b) ** 2)))


def main(out_dir: str | Path, steps: int = 1000, rows: int = 300, cols: int = 200) -> dict:
    """Fit U, V on the observed entries with Adam; compare with the truncated SVD; figure."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    truth, noisy, mask = synthetic(rows, cols)
    oi, oj = np.nonzero(mask)  # observed entries, one sample each
    hi, hj = np.nonzero(~mask)  # held out
    data = {"i": oi, "j": oj, "r": noisy[oi, oj]}

    t0 = time.perf_counter()
    loss, params = model(rows, cols)
    f = sg.compile(loss, params)
    x0 = f.init(seed=0, scale=0.1 * RANK)  # entries of variance 0.1: U Vᵀ starts small
    loss0, g = f.value_and_grad(x0, **data)  # the first call compiles the code
    build = time.perf_counter() - t0
    v_ref, dU, dV = reference(**f.unpack(x0), **data)
    g_ref = f.pack(U=dU, V=dV)
    max_rel = max(abs(loss0 - v_ref) / abs(v_ref),
                  float(np.max(np.abs(g - g_ref)) / np.max(np.abs(g_ref))))
    t0 = time.perf_counter()
    res = sg.minimize(f, x0, optimizer=optim.adam(lr=LR), steps=steps, data=data)
    fit = time.perf_counter() - t0
    fitted = f.unpack(res.x)
    recon = fitted["U"] @ fitted["V"].T

    # Reference: truncated SVD of the full noisy matrix at the same rank.
    u, s, vt = np.linalg.svd(noisy, full_matrices=False)
    svd = (u[:, :RANK] * s[:RANK]) @ vt[:RANK]

    out_numbers = {
        "train_rmse": rmse(recon[oi, oj], noisy[oi, oj]),
        "heldout_rmse": rmse(recon[hi, hj], noisy[hi, hj]),
        "svd_heldout_rmse": rmse(svd[hi, hj], noisy[hi, hj]),
        "truth_rmse": rmse(recon, truth),
        "svd_truth_rmse": rmse(svd, truth),
        "data_std": float(np.std(noisy[hi, hj])),
    }
    print(f"{rows} x {cols} matrix of rank {RANK} + noise {NOISE}; {oi.size} entries observed "
          f"({oi.size / mask.size:.0%}), {hi.size} held out; {f.n_params} parameters")
    print(f"build {build:.2f} s (SymPy, code generation, Numba); fit {fit:.2f} s "
          f"({res.nit} full-batch Adam steps, lr {LR}), status {res.status}")
    print(f"value and gradient at the start against a NumPy reference (np.add.at): "
          f"max relative error {max_rel:.1e}")
    print(f"loss: initial {loss0:.4f}, final {res.fun:.4f}")
    n = out_numbers
    print(f"RMSE vs the noisy entries: train {n['train_rmse']:.4f}, held out "
          f"{n['heldout_rmse']:.4f}; truncated SVD of the full matrix, held out "
          f"{n['svd_heldout_rmse']:.4f} (data std {n['data_std']:.3f})")
    print(f"RMSE vs the noise-free matrix, all entries: factorisation {n['truth_rmse']:.4f}, "
          f"SVD {n['svd_truth_rmse']:.4f}")
    fig_path = figure(out, res, truth, noisy, mask, recon)
    print(f"figure: {fig_path}")
    return {**out_numbers, "fun": res.fun, "status": res.status, "n_params": f.n_params,
            "n_observed": int(oi.size), "max_rel_error": max_rel, "build_seconds": build,
            "fit_seconds": fit, "figures": [str(fig_path)]}


def figure(out: Path, res, truth, noisy, mask, recon) -> Path:
    """Loss per step, singular values, and the true / observed / reconstructed matrices."""
    from symgrad import plot

    fig = plot.figure(5, size=(3.6, 3.4))
    plot.loss_curves({"training loss": res}, ax=fig.axes[0], xlabel="step",
                     ylabel="mean squared error + l2", title=f"Adam (lr {LR}), full batch")
    ax = fig.axes[1]
    shown_sv = 3 * RANK
    for label, mat, style in (("true", truth, "o-"), ("noisy (full)", noisy, "s--"),
                              ("U Vᵀ (fitted on 30%)", recon, "x:")):
        ax.plot(np.arange(1, shown_sv + 1), np.linalg.svd(mat, compute_uv=False)[:shown_sv],
                style, ms=5, label=label)
    ax.axvline(RANK + 0.5, color="0.7", lw=0.8, ls="--")
    ax.set(xlabel="index", ylabel="singular value", title=f"Singular values (rank {RANK})")
    ax.legend()
    lim = 2.5 * np.std(truth)
    shown = np.where(mask, noisy, np.nan)
    titles = ("true matrix", f"observed ({mask.mean():.0%})", "U Vᵀ")
    for ax, mat, title in zip(fig.axes[2:], (truth, shown, recon), titles, strict=True):
        ax.imshow(mat[:60, :60], cmap="RdBu_r", vmin=-lim, vmax=lim)
        ax.set(title=f"{title} (60 x 60 corner)", xticks=[], yticks=[])
    return plot.save(fig, out / "matrix_factorisation.png")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir", nargs="?", help="output folder (default: a new temporary one)")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--rows", type=int, default=300)
    ap.add_argument("--cols", type=int, default=200)
    a = ap.parse_args()
    main(Path(a.out_dir) if a.out_dir else Path(tempfile.mkdtemp(prefix="symgrad-example-")),
         steps=a.steps, rows=a.rows, cols=a.cols)
