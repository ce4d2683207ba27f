"""Learning-rate schedules: plain ``step -> value`` functions.

A schedule is any callable taking the 0-based step number ``k`` and returning a float. The
ones here are small frozen dataclasses, so they compare, hash and print well, and compose:
``warmup(cosine(0.1, 1000), steps=100)`` warms up linearly for 100 steps and then decays.
Every optimizer in :mod:`symgrad.optim` takes a float or a schedule as its learning rate.

    =================  ====================================================
    constant(v)        ``v``
    time_decay(l, d)   ``l / (1 + d*k)``                (inverse-time decay)
    step(l, s, g)      ``l * g**floor(k/s)``            (step decay)
    exponential(l, g)  ``l * g**(k/s)``                 (smooth exponential decay)
    cosine(l, T, a)    ``l * (a + (1-a) * (1 + cos(pi*min(k, T)/T)) / 2)``
    warmup(s, W, v0)   ``v0 + (s(0) - v0) * k/W`` for k < W, then ``s(k - W)``
    =================  ====================================================

The compiled optimizer loop evaluates a schedule once per step in Python before the loop
starts (:func:`values`), so any callable works there too, with exactly the same numbers.

>>> from symgrad import schedules
>>> lr = schedules.time_decay(0.2, decay=0.01)
>>> lr(0), round(lr(100), 6)
(0.2, 0.1)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Constant",
    "Cosine",
    "Exponential",
    "Schedule",
    "Step",
    "TimeDecay",
    "Warmup",
    "as_schedule",
    "constant",
    "cosine",
    "exponential",
    "rate",
    "step",
    "time_decay",
    "values",
    "warmup",
]

Schedule = Callable[[int], float]
"""Type of a schedule: ``step -> learning rate`` with ``step`` the 0-based step number."""


def _positive(name: str, value: float, *, allow_zero: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {value!r}") from None
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be finite and {bound}, got {value!r}")
    return v


def _count(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class Constant:
    """``lr(k) = value``."""

    value: float

    def __call__(self, k: int) -> float:
        return self.value


@dataclass(frozen=True)
class TimeDecay:
    """Inverse-time decay ``lr(k) = lr0 / (1 + decay*k)``, ``k`` the 0-based step."""

    lr0: float
    decay: float

    def __call__(self, k: int) -> float:
        return self.lr0 / (1.0 + self.decay * k)


@dataclass(frozen=True)
class Step:
    """Step decay ``lr(k) = lr0 * gamma**floor(k/step_size)``."""

    lr0: float
    step_size: int
    gamma: float

    def __call__(self, k: int) -> float:
        return self.lr0 * self.gamma ** (k // self.step_size)


@dataclass(frozen=True)
class Exponential:
    """Exponential decay ``lr(k) = lr0 * gamma**(k/step_size)``."""

    lr0: float
    gamma: float
    step_size: float

    def __call__(self, k: int) -> float:
        return self.lr0 * self.gamma ** (k / self.step_size)


@dataclass(frozen=True)
class Cosine:
    """Cosine decay from ``lr0`` to ``alpha*lr0`` over ``T = decay_steps`` steps, then flat.

    ``lr(k) = lr0 * (alpha + (1 - alpha) * (1 + cos(pi * min(k, T) / T)) / 2)``
    """

    lr0: float
    decay_steps: int
    alpha: float

    def __call__(self, k: int) -> float:
        t = min(k, self.decay_steps) / self.decay_steps
        return self.lr0 * (self.alpha + (1.0 - self.alpha) * 0.5 * (1.0 + math.cos(math.pi * t)))


@dataclass(frozen=True)
class Warmup:
    """Linear warm-up from ``start`` to ``after(0)`` over ``steps`` steps, then ``after``.

    ``lr(k) = start + (after(0) - start) * k / steps`` for ``k < steps``; the wrapped schedule
    starts its own clock when the warm-up ends, so ``warmup(cosine(...), 100)`` decays over the
    cosine's full horizon after the warm-up.
    """

    after: Schedule
    steps: int
    start: float

    def __call__(self, k: int) -> float:
        if k < self.steps:
            return self.start + (self.after(0) - self.start) * (k / self.steps)
        return self.after(k - self.steps)


def constant(value: float) -> Constant:
    """Constant learning rate ``value``.

    >>> constant(0.1)(123)
    0.1
    """
    return Constant(_positive("value", value, allow_zero=True))


def time_decay(lr0: float, decay: float) -> TimeDecay:
    """Inverse-time decay ``lr0 / (1 + decay*k)`` (MATLAB's "time-based decay").

    >>> time_decay(0.2, decay=0.01)(100)
    0.1
    """
    return TimeDecay(_positive("lr0", lr0), _positive("decay", decay, allow_zero=True))


def step(lr0: float, step_size: int, gamma: float = 0.1) -> Step:
    """Step decay ``lr0 * gamma**floor(k/step_size)``: times ``gamma`` every ``step_size`` steps.

    >>> [step(1.0, step_size=2, gamma=0.5)(k) for k in range(5)]
    [1.0, 1.0, 0.5, 0.5, 0.25]
    """
    return Step(_positive("lr0", lr0), _count("step_size", step_size), _positive("gamma", gamma))


def exponential(lr0: float, gamma: float, step_size: float = 1.0) -> Exponential:
    """Exponential decay ``lr0 * gamma**(k/step_size)`` (the smooth version of :func:`step`).

    >>> exponential(1.0, gamma=0.5, step_size=2)(1)  # doctest: +ELLIPSIS
    0.7071...
    """
    return Exponential(
        _positive("lr0", lr0), _positive("gamma", gamma), _positive("step_size", step_size)
    )


def cosine(lr0: float, decay_steps: int, alpha: float = 0.0) -> Cosine:
    """Cosine decay from ``lr0`` to ``alpha*lr0`` over ``decay_steps`` steps (then constant).

    >>> s = cosine(1.0, decay_steps=10)
    >>> s(0), round(s(5), 12), s(10), s(20)
    (1.0, 0.5, 0.0, 0.0)
    """
    alpha = _positive("alpha", alpha, allow_zero=True)
    if alpha > 1:
        raise ValueError(f"alpha (final fraction of lr0) must be in [0, 1], got {alpha!r}")
    return Cosine(_positive("lr0", lr0), _count("decay_steps", decay_steps), alpha)


def warmup(after: float | Schedule, steps: int, start: float = 0.0) -> Warmup:
    """Linear warm-up over ``steps`` steps from ``start`` to ``after(0)``, then ``after``.

    ``after`` is a float (constant after the warm-up) or any schedule.

    >>> s = warmup(cosine(1.0, decay_steps=4), steps=2)
    >>> [round(s(k), 3) for k in range(7)]
    [0.0, 0.5, 1.0, 0.854, 0.5, 0.146, 0.0]
    """
    return Warmup(
        as_schedule(after, "after"),
        _count("steps", steps),
        _positive("start", start, allow_zero=True),
    )


def as_schedule(lr: float | Schedule, name: str = "lr") -> Schedule:
    """A float becomes :func:`constant`; a callable is returned as is; anything else is an error."""
    if callable(lr):
        return lr
    if isinstance(lr, bool) or not isinstance(lr, int | float | np.integer | np.floating):
        raise TypeError(
            f"{name} must be a float or a schedule (a callable step -> value), got {lr!r}"
        )
    return constant(lr)


def values(schedule: float | Schedule, steps: int) -> np.ndarray:
    """The schedule evaluated at ``k = 0 .. steps-1`` as a float64 array.

    Exactly the values the schedule returns step by step (this is how the compiled optimizer
    loop supports any schedule).

    >>> values(step(1.0, 2, 0.5), 4)
    array([1. , 1. , 0.5, 0.5])
    """
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps!r}")
    sched = as_schedule(schedule)
    if isinstance(sched, Constant):
        return np.full(steps, rate(sched, 0) if steps else sched.value, dtype=np.float64)
    out = np.fromiter((sched(k) for k in range(steps)), dtype=np.float64, count=steps)
    bad = np.flatnonzero(~np.isfinite(out) | (out < 0))
    if bad.size:
        rate(sched, int(bad[0]))  # raises, naming the step
    return out


def rate(schedule: Schedule, step: int) -> float:
    """The schedule's learning rate at ``step``, or an error naming the step if it is negative
    or not finite (the compiled loop checks the same values up front: :func:`values`)."""
    v = float(schedule(step))
    if not (math.isfinite(v) and v >= 0):
        raise ValueError(f"schedule {schedule!r} gave an invalid learning rate {v!r} at step "
                         f"{step}")
    return v
