"""Running the compiled loop (:mod:`symgrad.train.compiled`): packing the state, calling the loop
in slices, and turning what it returns into an :class:`OptimizeResult`.

The loop runs in slices of bounded wall time (:data:`symgrad.train.interrupt.SLICE_SECONDS`,
sized from the time the previous slice took): between slices Ctrl-C ends the run with
``status="interrupted"`` and the iterate reached, and the progress bar moves. All state lives
in the packed arrays, so the slicing never changes a number (the tests check it bit for bit).
"""

from __future__ import annotations

import math
import time

import numpy as np

from . import schedules
from .compiled import (
    DIV_BOUND,
    DIV_GRAD,
    DIV_LOSS,
    DIV_X,
    FP_BOUND,
    FP_EN,
    FP_ESUM,
    GTOL,
    IP_EPOCH,
    IP_K0,
    IP_K1,
    IP_NREC,
    RUNNING,
    TOL,
    loop_function,
)
from .evaluate import full_evaluator, gathered
from .interrupt import SLICE_SECONDS, Interrupt, interrupted_message
from .plan import Plan, param_labels, permutations
from .result import (
    History,
    OptimizeResult,
    Progress,
    converged,
    diverged_message,
    epoch_converged,
    final_grad_norm,
    ran_out,
)

__all__ = ["run_compiled"]

_WHY = {DIV_LOSS: "loss", DIV_GRAD: "grad", DIV_BOUND: "bound", DIV_X: "x"}
#: Steps of the first slice (its time sizes the next ones, which grow at most 64x a slice).
FIRST_SLICE = 16


#: Seconds per step measured by the last run of each (loop, samples, batch, parameters).
_PER_STEP: dict[tuple, float] = {}


class _Slices:
    """Slice lengths: about SLICE_SECONDS each, from the time per step measured by the previous
    slice (the first one from the last run of the same loop and sizes, else FIRST_SLICE)."""

    def __init__(self, cap: int, key: tuple) -> None:
        self.cap, self.key = cap, key
        known = _PER_STEP.get(key)
        self.size = FIRST_SLICE if known is None else self._fit(known, cap)
        self.size = min(self.size, cap)

    def _fit(self, per_step: float, grow: int) -> int:
        return max(1, min(int(SLICE_SECONDS / max(per_step, 1e-10)), grow, self.cap))

    def next(self, done: int, seconds: float) -> None:
        if done > 0:
            per_step = seconds / done
            _PER_STEP[self.key] = per_step
            self.size = self._fit(per_step, 64 * self.size)


def run_compiled(p: Plan) -> OptimizeResult:
    """Run the plan in the compiled loop (``compiled_reason(p)`` must be '')."""
    opt, steps, rec, n = p.opt, p.steps, p.record_every, p.x0.size
    loop = loop_function(p)[0]
    args = p.jit_args
    W = np.zeros((4 + opt.n_state, n))
    W[0] = p.x0
    for j, s in enumerate(opt.init(p.x0)):
        W[4 + j] = s
    cast = p.dtype != np.float64  # the kernel's x and g in its type (the state stays float64)
    K = (np.stack([p.x0.astype(p.dtype), np.zeros(n, p.dtype)]),) if cast else ()
    if isinstance(opt.lr, schedules.Constant):
        lrs, lstride = np.array([schedules.rate(opt.lr, 0)]), 0
    else:
        lrs, lstride = schedules.values(opt.lr, steps + 1), 1
    m = (steps + rec - 1) // rec + 1 if rec else 0
    H, S = np.empty((2 + (lstride != 0), m)), np.empty(m, np.int64)
    HX = np.empty((m if p.record_x else 0, n))
    batch = p.batch_size is not None
    bs = p.batch_size or 0
    per_epoch = -(-p.n_samples // bs) if batch else max(steps, 1)
    ip = np.array([0, 0, rec, 0 if rec else -1, 0, lstride, 0, bs, p.n_samples], np.int64)
    fp = np.array([-1.0 if p.tol is None or batch else p.tol,
                   -1.0 if p.gtol is None else p.gtol, p.factor, math.nan, 0.0, 0.0])
    hyper = opt.hyper_array
    slices = _Slices(max(1, steps // 100) if p.progress else max(steps, 1),
                     (loop, p.n_samples, p.batch_size, n))
    perms = permutations(p) if batch else None
    perm = np.empty(0, np.int64)
    bar = Progress(steps, p.progress)
    code, k, fk, detail = RUNNING, 0, math.nan, 0.0
    epoch_losses: list[float] = []
    message = ""
    interrupted = False
    with Interrupt() as intr:
        try:
            while k < steps and code == RUNNING and not message and not interrupted:
                kb = k
                if batch:
                    perm = next(perms)  # type: ignore[arg-type]
                    ip[IP_EPOCH] = kb
                end = min(kb + per_epoch, steps)
                while k < end:
                    if intr.requested:
                        interrupted = True
                        break
                    k0 = k
                    ip[IP_K0], ip[IP_K1] = k0, min(k0 + slices.size, end)
                    t0 = time.perf_counter()
                    code, k, fk, detail = loop(W, *K, lrs, H, S, HX, ip, fp, hyper, perm,
                                               *args)
                    slices.next(k - k0, time.perf_counter() - t0)
                    bar.update(k - k0, fk)
                    if code != RUNNING:
                        break
                if batch and code == RUNNING and k == kb + per_epoch:
                    epoch_losses.append(fp[FP_ESUM] / fp[FP_EN])
                    fp[FP_ESUM] = fp[FP_EN] = 0.0
                    message = epoch_converged(k, epoch_losses, p.tol)
        finally:
            bar.close()
    if fp[FP_EN]:
        epoch_losses.append(fp[FP_ESUM] / fp[FP_EN])  # the last, partial epoch
    x, g = W[0], W[2]
    nfev = k + (0 if code == RUNNING else 1)
    if message:
        status = "converged"
    elif interrupted and code == RUNNING:
        status, message = "interrupted", interrupted_message(k)
    elif code == RUNNING:
        status, message = ran_out(steps, p.tol, p.gtol)
    elif code == GTOL:
        status, message = "converged", converged(k, "gradient norm", detail, f"gtol={p.gtol:g}")
    elif code == TOL:
        status = "converged"
        message = converged(k, "relative loss change", detail, f"tol={p.tol:g}")
    else:
        status, message = "diverged", diverged_message(
            k, _WHY[code], fk, fp[FP_BOUND], x, g, param_labels(p, n))
    if code == RUNNING or batch:  # the final loss and gradient on the full data
        if cast:
            fun, g = full_evaluator(p)(x)
        else:
            g = W[3]
            full = p.jit_args if not batch or gathered(p) else (*p.jit_args[:-1], None)
            fun = float(p.jit_vg(x, g, *full))
        nfev += 1
    else:
        fun = fk
    history = _history(p, H, S, HX, int(ip[IP_NREC]), k,
                       (fun, final_grad_norm(g), lrs[k * lstride]), x, epoch_losses)
    return OptimizeResult(x=x.copy(), fun=fun, jac=g.copy(), nit=k, nfev=nfev, status=status,
                          message=message, history=history, compiled=True)


def _history(p: Plan, H: np.ndarray, S: np.ndarray, HX: np.ndarray, r: int, k: int,
             last: tuple, x: np.ndarray, epoch_losses: list[float]) -> History:
    """The History from the loop's records (rows of ``H`` are contiguous: the full arrays are
    views, no copy; a run that stopped early copies what it used). A constant learning rate is
    not stored per record: ``lr`` is then a read-only broadcast of it (fresh memory costs
    about 0.1 ms a megabyte, as much as 10,000 steps of a small loss)."""
    n = x.size
    if p.record_every:
        H[:, r], S[r] = last[:H.shape[0]], k
        if p.record_x:
            HX[r] = x
        r += 1
    if 2 * r < H.shape[1]:  # do not keep a large unused buffer alive
        H, S, HX = H[:, :r].copy(), S[:r].copy(), HX[:r].copy()
    return History(step=S[:r], x=HX[:r] if p.record_x else np.empty((0, n)),
                   loss=H[0, :r], grad_norm=H[1, :r],
                   lr=H[2, :r] if H.shape[0] == 3 else np.broadcast_to(last[2], (r,)),
                   epoch_loss=np.array(epoch_losses, dtype=np.float64))
