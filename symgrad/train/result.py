"""What a run returns: :class:`OptimizeResult` (SciPy's names), its :class:`History`, the
divergence messages both loops share, and the progress bar."""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..runtime.blas import dot
from . import norm

__all__ = ["FAILED", "History", "OptimizeResult"]


@dataclass(frozen=True)
class History:
    """What the loop recorded every ``record_every`` steps (all arrays, one row per record).

    ``step[i]`` is the 0-based step, ``loss[i]`` the loss that step evaluated and
    ``grad_norm[i]`` the Euclidean norm of its gradient, ``lr[i]`` the learning rate it used.
    ``x[i]`` is the iterate at which it evaluated them, recorded only with
    ``minimize(..., record_x=True)``; otherwise ``x`` is empty, shape ``(0, n)``. Memory: at
    most 32 bytes per record, plus ``8 n`` with ``record_x`` (so ``record_x`` with many
    parameters wants a larger ``record_every``); the compiled loop stores a constant learning
    rate once (``lr`` is then a read-only broadcast). The last record is the final iterate
    (``step == nit``, loss and gradient on the full data, ``lr`` the rate the next step would
    use), so ``x`` is the whole path. ``epoch_loss[e]`` (mini-batch runs only, else empty) is the
    batch-size-weighted mean of the step losses of epoch ``e`` (the usual running epoch loss
    for a mean-reduced loss).
    """

    step: np.ndarray
    x: np.ndarray
    loss: np.ndarray
    lr: np.ndarray
    grad_norm: np.ndarray
    epoch_loss: np.ndarray = field(default_factory=lambda: np.empty(0))

    def __len__(self) -> int:
        return len(self.step)

    def __repr__(self) -> str:
        last = f", last step {int(self.step[-1])}" if len(self.step) else ""
        return f"History({len(self.step)} records{last}, {len(self.epoch_loss)} epochs)"


#: The statuses of a run that did not succeed (``"interrupted"``: Ctrl-C ended it early).
FAILED = frozenset({"diverged", "maxiter", "failed", "interrupted"})


@dataclass(frozen=True)
class OptimizeResult:
    """Result of :func:`minimize`, with SciPy's field names.

    Attributes:
        x: final parameters. fun: loss at ``x``. jac: gradient at ``x``.
        nit: updates applied (Newton: trust-region iterations, rejected steps included).
        nfev: objective (value-and-gradient) evaluations (``njev`` is the same number: each
        evaluation gives both). nhev: Hessian-vector products (``optim.newton()``), else 0.
        success: False only for ``"diverged"``, ``"maxiter"``, ``"failed"`` and
        ``"interrupted"`` (derived from ``status``).
        status: ``"completed"``, ``"converged"``, ``"stopped"``, ``"maxiter"``, ``"diverged"``,
            ``"interrupted"`` (Ctrl-C: ``x`` is the iterate reached) or ``"failed"``
            (second-order methods: no step decreases the loss, i.e. the line search or the
            trust region failed, and the gradient is not at the rounding floor).
        message: what happened, in words (the step number when it diverged).
        history: the recorded path, see :class:`History` (for ``optim.lbfgs()``/``newton()``
            ``lr[i]`` is the line-search step length that reached iterate ``i`` (``lr[0]``
            is 1.0: no step led there) / the trust radius).
        compiled: whether the compiled Numba loop ran.
    """

    x: np.ndarray
    fun: float
    jac: np.ndarray
    nit: int
    nfev: int
    status: str
    message: str
    history: History
    compiled: bool = False
    nhev: int = 0

    @property
    def success(self) -> bool:
        """Whether the run ended well: any status but the failing ones (:data:`FAILED`)."""
        return self.status not in FAILED

    @property
    def njev(self) -> int:
        """Gradient evaluations: each objective evaluation returns the gradient too."""
        return self.nfev


_DIVERGED = {
    "loss": "the loss is {fk!r}",
    "grad": "the gradient is not finite",
    "bound": "the loss {fk:.6g} exceeds diverge_factor * max(1, |initial loss|) = {bound:.6g}",
    "x": "the update gave non-finite parameters",
}


def diverged_message(k: int, why: str, fk: float, bound: float, x: np.ndarray | None = None,
                      g: np.ndarray | None = None, names: Any = None) -> str:
    """Why the run stopped as diverged, in words that fit the cause.

    A non-finite loss or gradient at step 0 means the loss is not defined (or not
    differentiable) at the starting point: no learning rate helps. At a later step, or when the
    loss grew past the bound, the steps were too large.
    """
    reason = _DIVERGED[why].format(fk=fk, bound=bound)
    if why in ("loss", "grad") and x is not None:
        bad = None if why == "loss" or g is None else ~np.isfinite(g)
        where = describe_x(x, names, bad)
        if k == 0:
            what = "not defined" if why == "loss" else "not differentiable"
            return (f"non-finite at the starting point (step 0): {reason} at {where}: the loss "
                    f"is {what} there; start from another x0")
        return (f"diverged at step {k}: {reason} at {where}: the steps left the region where "
                "the loss is defined (or overflowed); try a smaller learning rate")
    return f"diverged at step {k}: {reason}; try a smaller learning rate"


def describe_x(x: np.ndarray, names: Any, bad: np.ndarray | None = None, most: int = 6) -> str:
    """``a=1, b=0`` for small x; the non-finite gradient components' values when ``bad``."""
    names = list(names) if names is not None and len(names) == x.size else \
        [f"x[{i}]" for i in range(x.size)]
    idx = np.flatnonzero(bad) if bad is not None and bad.any() else np.arange(x.size)
    parts = [f"{names[i]}={x[i]:.6g}" for i in idx[:most]]
    more = f", ... ({idx.size - most} more)" if idx.size > most else ""
    return ("the parameters with a non-finite gradient " if bad is not None and bad.any()
            else "x = ") + ("(" + ", ".join(parts) + more + ")")


def rel_change(f_prev: float, fk: float) -> float:
    return abs(f_prev - fk) / max(abs(f_prev), abs(fk), 1.0)


def converged(k: int, what: str, value: float, rule: str, where: str = "") -> str:
    """The message of a stopping rule met at step ``k``: ``what`` is ``value`` <= ``rule``."""
    return f"converged at step {k}{where}: {what} {value:.3g} <= {rule}"


def epoch_converged(k: int, epoch_losses: list[float], tol: float | None) -> str:
    """The message when the last two epoch losses differ by at most ``tol`` (else '')."""
    if tol is None or len(epoch_losses) < 2:
        return ""
    d = rel_change(epoch_losses[-2], epoch_losses[-1])
    return "" if d > tol else converged(k, "relative epoch-loss change", d, f"tol={tol:g}",
                                        f" (epoch {len(epoch_losses) - 1})")


def ran_out(steps: int, tol: float | None, gtol: float | None) -> tuple[str, str]:
    """The status and message of a run that took all its steps."""
    if tol is not None or gtol is not None:
        return "maxiter", f"reached steps={steps} without meeting tol/gtol"
    return "completed", f"completed {steps} steps"


def sq_norm(v: np.ndarray) -> float:
    """``v @ v`` without BLAS (:func:`symgrad.runtime.blas.dot`)."""
    return dot(v, v)


def grad_norm(g: np.ndarray) -> float:
    """``|g|``, as the compiled loop computes it (:func:`symgrad.train.norm.sq_norm`)."""
    if not (isinstance(g, np.ndarray) and g.ndim == 1 and g.dtype in _NORM_TYPES):
        g = np.ascontiguousarray(g, dtype=np.float64).reshape(-1)
    return math.sqrt(norm.sq_norm(g))


_NORM_TYPES = (np.dtype(np.float64), np.dtype(np.float32))


def final_grad_norm(g: np.ndarray) -> float:
    with np.errstate(over="ignore", invalid="ignore"):
        return grad_norm(g)


class Progress:
    """tqdm when installed, else a line on stderr at most every half second."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.done, self.bar, self.enabled = total, 0, None, enabled
        self.last = 0.0
        if not enabled:
            return
        try:
            from tqdm.auto import tqdm
        except ImportError:
            return
        self.bar = tqdm(total=total, desc="minimize", unit="step")

    def update(self, n: int, loss: float) -> None:
        if not self.enabled:
            return
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            self.bar.set_postfix(loss=f"{loss:.4g}", refresh=False)
            return
        now = time.perf_counter()
        if now - self.last >= 0.5 or self.done >= self.total:
            self.last = now
            pct = 100.0 * self.done / max(self.total, 1)
            sys.stderr.write(
                f"\rminimize: {pct:5.1f}% ({self.done}/{self.total} steps) loss={loss:.4g}"
            )
            sys.stderr.flush()

    def close(self) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.close()
        else:
            sys.stderr.write("\n")
            sys.stderr.flush()
