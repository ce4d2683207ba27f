"""Planning a run: check every argument of :func:`symgrad.minimize` once, in the user's terms,
into a :class:`Plan` both loops read."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..runtime.argcheck import by_name, seeded
from .objective import arith_dtype, how, is_bound, kernel_dtype, per_sample
from .optim import Optimizer
from .second_order import SecondOrder

__all__ = ["DEFAULT_STEPS", "Plan", "param_labels", "permutations", "plan"]

#: Default number of steps when neither ``steps`` nor ``epochs`` is given.
DEFAULT_STEPS = 1000

_F64 = np.dtype(np.float64)
Callback = Callable[[int, np.ndarray, float, np.ndarray], Any]


def _int_arg(name: str, value: Any, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _bool_arg(name: str, value: Any) -> bool:
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def _opt_float(name: str, value: Any) -> float | None:
    if value is None:
        return None
    v = float(value)
    if not (math.isfinite(v) and v >= 0):
        raise ValueError(f"{name} must be a finite number >= 0 (or None), got {value!r}")
    return v


@dataclass(frozen=True)
class Plan:
    f: Any
    kernel: bool  # a compiled loss (f is then the unbound kernel): the loops call f.jit
    x0: np.ndarray
    opt: Optimizer
    steps: int
    data: Mapping[str, np.ndarray] | None
    n_samples: int
    batch_size: int | None  # None: full batch
    seed: Any
    tol: float | None
    gtol: float | None
    callback: Callback | None
    progress: bool
    record_every: int
    record_x: bool  # the history keeps x too
    factor: float  # inf disables the loss bound
    jit_vg: Any = None  # f.jit.value_and_grad for kernels
    jit_args: tuple = ()  # its full-batch data arguments, f.data_args(data)
    how: str = "kernel"  # "kernel" | "method" (f.value_and_grad) | "callable"
    dtype: np.dtype = _F64  # a kernel's x and g (the state is float64)
    per_sample: frozenset = frozenset()  # the data a batch takes rows of
    arith: np.dtype = _F64  # the type the kernel rounds x to (float32: x must stay in range)


def plan(
    f: Any,
    x0: Any,
    optimizer: Any,
    steps: Any,
    data: Any,
    batch_size: Any,
    epochs: Any,
    seed: Any,
    tol: Any,
    gtol: Any,
    callback: Any,
    progress: Any,
    record_every: Any,
    diverge_factor: Any,
    record_x: Any = False,
) -> Plan:
    via = how(f)  # TypeError for what is neither a loss nor callable
    kernel = via == "kernel"
    bound = is_bound(f)
    per = None
    if bound:
        if data is not None:
            raise ValueError("f is a bound kernel (its data are fixed): do not pass data=")
        f, jit_args = f.kernel, tuple(f.args)
    if isinstance(x0, Mapping):  # by name, as least_squares takes it: the kernel packs it
        if not hasattr(f, "pack"):
            raise TypeError("x0 as a dict by name needs a compiled kernel (its pack); pass x0 "
                            "as an array")
        x0 = by_name(f, x0)
    try:
        x = np.array(x0, dtype=np.float64)  # a copy: the caller's x0 is never modified
    except (TypeError, ValueError):
        raise TypeError(f"x0 must be an array of numbers (the parameters in order), got "
                        f"{x0!r:.60}") from None
    if x.ndim == 0:
        x = x.reshape(1)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"x0 must be a non-empty 1-D array of parameters, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"x0 must be finite, got {x}")
    dtype = kernel_dtype(f) if kernel else _F64
    arith = arith_dtype(f) if kernel else _F64
    if arith != _F64:
        big = np.flatnonzero(~(np.abs(x) <= np.finfo(arith).max))
        if big.size:
            raise ValueError(f"x0[{big[0]}] = {x[big[0]]:g} is beyond the range of this {arith} "
                             f"kernel (|x| <= {np.finfo(arith).max:.4g}); rescale the parameters")
    n_params = getattr(f, "n_params", None) if via != "callable" else None
    if isinstance(n_params, int) and n_params != x.size:
        names = ", ".join(getattr(f, "params", ()))
        raise ValueError(f"x0 has {x.size} values but the loss has {n_params} parameters ({names})")

    if not isinstance(optimizer, Optimizer | SecondOrder):
        raise TypeError(
            f"optimizer must be a symgrad.optim.Optimizer (e.g. optim.adam(lr=1e-3)) or "
            f"optim.lbfgs()/optim.newton(), got {optimizer!r}"
        )

    if data is not None:
        if not isinstance(data, Mapping):
            raise TypeError(f"data must be a mapping name -> array, got {type(data).__name__}")
        data = {str(k): np.asarray(v) for k, v in data.items()}
        # only per-sample columns are batched: a kernel's samples=False arrays and indexed=True
        # columns are read whole (the kernel validates them); a plain callable's are all rows
        per = per_sample(f) if via != "callable" else None
        lengths = {k: (v.shape[0] if v.ndim else -1) for k, v in data.items()
                   if per is None or k in per}
        if any(n < 0 for n in lengths.values()):
            raise ValueError(f"data columns must be arrays with one row per sample: {lengths}")
        if len(set(lengths.values())) > 1:
            raise ValueError(f"data columns must have the same number of samples, got {lengths}")
        n_samples = next(iter(lengths.values()), 0)
    else:
        n_samples = 0
        if kernel and not bound and getattr(f, "data_names", ()):
            raise ValueError(f"this loss needs data: pass data={{...}} with {f.data_names}")
    if kernel and not bound:
        jit_args = tuple(f.data_args(data))  # the kernel validates the columns

    if batch_size is not None:
        if data is None or n_samples == 0:
            whole = "" if data is None or lengths else (
                f": this loss's data ({', '.join(data)}) are read whole, not per sample")
            raise ValueError("batch_size needs data (data={...} with at least one sample)"
                             + whole)
        batch_size = min(_int_arg("batch_size", batch_size, minimum=1), n_samples)
    if steps is not None and epochs is not None:
        raise ValueError("give steps or epochs, not both (epochs = passes over the data)")
    if epochs is not None:
        if data is None:
            raise ValueError("epochs needs data (an epoch is one pass over the data); use steps")
        per_epoch = -(-n_samples // batch_size) if batch_size else 1
        steps = _int_arg("epochs", epochs, minimum=0) * per_epoch
    elif steps is None:
        steps = DEFAULT_STEPS
    steps = _int_arg("steps", steps, minimum=0)

    gtol = _opt_float("gtol", gtol)
    if gtol is not None and batch_size is not None:
        raise ValueError("gtol needs full-batch gradients; with batch_size use tol (epoch losses)")
    seeded(seed)  # checked here, not at the first shuffle
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable(step, x, loss, grad), got {callback!r}")
    if diverge_factor is None:
        factor = math.inf
    else:
        factor = float(diverge_factor)
        if not factor > 1:
            raise ValueError(f"diverge_factor must be > 1 (or None), got {diverge_factor!r}")
    return Plan(
        f,
        kernel,
        x,
        optimizer,
        steps,
        data,
        n_samples,
        batch_size,
        seed,
        _opt_float("tol", tol),
        gtol,
        callback,
        bool(progress),
        _int_arg("record_every", record_every, minimum=0),
        _bool_arg("record_x", record_x),
        factor,
        f.jit.value_and_grad if kernel else None,
        jit_args if kernel else (),
        via,
        dtype,
        frozenset(data or ()) if per is None else per,
        arith,
    )


def param_labels(p: Plan, n: int) -> tuple[str, ...] | None:
    """One name per entry of x, else None: ``f.param_names(n)`` (a loss whose vectors take
    their length from x), else ``f.labels`` (one per entry), else ``f.params``."""
    f = p.f
    try:
        names = (f.param_names(n) if callable(getattr(f, "param_names", None))
                 else getattr(f, "labels", None))
        if names is None:
            names = getattr(f, "params", None)
        return tuple(names) if names is not None and len(names) == n else None
    except (TypeError, ValueError):
        return None


def permutations(p: Plan) -> Iterator[np.ndarray]:
    """The shuffling of a mini-batch run: one permutation of the samples per epoch, from
    ``np.random.default_rng(seed)`` (both loops draw from this one generator)."""
    rng = seeded(p.seed)
    while True:
        yield rng.permutation(p.n_samples)
