"""The loop in Python: each step calls the objective, then ``optimizer.update``.

Always available: callbacks, hand-written ``(init, update)`` pairs and plain callables run here.
Its arithmetic is the compiled loop's (:mod:`symgrad.train.compiled`): the same rule, the same
serial kernel function, the same permutations, in the same order.
"""

from __future__ import annotations

import math

import numpy as np

from ..runtime import blas
from .evaluate import batch_evaluator, full_evaluator
from .interrupt import Interrupt, interrupted_message
from .plan import Plan, param_labels, permutations
from .result import (
    History,
    OptimizeResult,
    Progress,
    converged,
    diverged_message,
    epoch_converged,
    final_grad_norm,
    grad_norm,
    ran_out,
    rel_change,
    sq_norm,
)

__all__ = ["run_python"]


def run_python(p: Plan) -> OptimizeResult:
    opt, steps, rec = p.opt, p.steps, p.record_every
    full = full_evaluator(p)
    batch_ev = batch_evaluator(p) if p.batch_size is not None else None
    perms = permutations(p) if batch_ev is not None else None
    bs = p.batch_size or 0
    per_epoch = -(-p.n_samples // bs) if bs else 0

    x = p.x0
    state = opt.init(x)
    narrow = p.arith != np.float64  # the kernel rounds x to float32: x must stay in range
    r_step: list[int] = []
    r_x: list[np.ndarray] = []
    r_f: list[float] = []
    r_lr: list[float] = []
    r_gn: list[float] = []
    epoch_losses: list[float] = []
    e_sum = e_n = 0.0
    perm = np.arange(0)
    nfev = 0
    bound = math.inf
    f_prev = math.nan
    status, message = "", ""
    last: tuple[float, np.ndarray] | None = None  # (f, g) at the final x, on the full data
    bar = Progress(steps, p.progress)
    k = 0
    # Overflow is reported as divergence, not as NumPy warnings from the norm or the update.
    errstate = np.errstate(over="ignore", invalid="ignore")
    errstate.__enter__()
    intr = Interrupt().__enter__()
    try:
        while k < steps:
            if intr.requested:
                status, message = "interrupted", interrupted_message(k)
                break
            blas.refresh()
            if batch_ev is not None:
                b = k % per_epoch
                if b == 0:
                    perm = next(perms)  # type: ignore[arg-type]
                idx = perm[b * bs : (b + 1) * bs]
                fk, gk = batch_ev(x, idx)
            else:
                fk, gk = full(x)
            nfev += 1
            if k == 0:
                bound = p.factor * max(1.0, abs(fk)) if math.isfinite(fk) else math.inf
            gn = grad_norm(gk)
            why = ""
            if not math.isfinite(fk):
                why = "loss"
            elif not math.isfinite(gn) and not np.isfinite(gk).all():
                why = "grad"
            elif fk > bound:
                why = "bound"
            if why:
                status, message = "diverged", diverged_message(
                    k, why, fk, bound, x, gk, param_labels(p, x.size))
                last = (fk, gk) if batch_ev is None else None
                break
            if p.gtol is not None and gn <= p.gtol:
                status, message = "converged", converged(k, "gradient norm", gn, f"gtol={p.gtol:g}")
                last = (fk, gk)
                break
            if p.tol is not None and batch_ev is None and k > 0:
                d = rel_change(f_prev, fk)
                if d <= p.tol:
                    status = "converged"
                    message = converged(k, "relative loss change", d, f"tol={p.tol:g}")
                    last = (fk, gk)
                    break
            if p.callback is not None and p.callback(k, x, fk, gk):
                status, message = "stopped", f"stopped by callback at step {k}"
                last = (fk, gk) if batch_ev is None else None
                break
            if rec and k % rec == 0:
                r_step.append(k)
                if p.record_x:
                    r_x.append(x)
                r_f.append(fk)
                r_lr.append(opt.learning_rate(k))
                r_gn.append(gn)
            x_new, state = opt.update(gk, state, x, k)
            x_new = np.asarray(x_new, dtype=np.float64)
            # x @ x is finite iff every entry is (barring overflow of huge finite entries); a
            # float32 kernel also needs x within float32's range (the compiled loop's test)
            if (not math.isfinite(sq_norm(x_new)) and not np.isfinite(x_new).all()) or (
                    narrow and not np.isfinite(x_new.astype(p.arith)).all()):
                status, message = "diverged", diverged_message(k, "x", fk, bound)
                last = (fk, gk) if batch_ev is None else None
                break
            x, f_prev = x_new, fk
            k += 1
            if p.progress:
                bar.update(1, fk)
            if batch_ev is not None:
                e_sum += fk * len(idx)
                e_n += len(idx)
                if b == per_epoch - 1:
                    epoch_losses.append(e_sum / e_n)
                    e_sum = e_n = 0.0
                    message = epoch_converged(k, epoch_losses, p.tol)
                    if message:
                        status = "converged"
                        break
    finally:
        intr.__exit__(None, None, None)
        errstate.__exit__(None, None, None)
        bar.close()
    if e_n:
        epoch_losses.append(e_sum / e_n)  # the last, partial epoch
    if not status:
        status, message = ran_out(steps, p.tol, p.gtol)
    if last is None:
        last = full(x)
        nfev += 1
    fun, jac = last
    if rec:
        r_step.append(k)
        if p.record_x:
            r_x.append(x)
        r_f.append(fun)
        r_lr.append(opt.learning_rate(k))
        r_gn.append(final_grad_norm(jac))
    n = p.x0.size
    history = History(
        step=np.array(r_step, dtype=np.int64),
        x=np.array(r_x, dtype=np.float64).reshape(len(r_x), n),
        loss=np.array(r_f, dtype=np.float64),
        lr=np.array(r_lr, dtype=np.float64),
        grad_norm=np.array(r_gn, dtype=np.float64),
        epoch_loss=np.array(epoch_losses, dtype=np.float64),
    )
    return OptimizeResult(
        x=np.array(x, dtype=np.float64),
        fun=float(fun),
        jac=np.array(jac, dtype=np.float64),
        nit=k,
        nfev=nfev,
        status=status,
        message=message,
        history=history,
        compiled=False,
    )
