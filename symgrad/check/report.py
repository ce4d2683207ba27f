"""What a check reports: methods, tolerances per method, the result types and their tables."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

import numpy as np

from .directions import _label_for

Method = Literal["auto", "central", "richardson", "complex", "exact"]
METHODS: tuple[str, ...] = ("auto", "central", "richardson", "complex", "exact")

EPS: float = float(np.finfo(np.float64).eps)
TINY: float = float(np.finfo(np.float64).tiny)

#: Relative base steps per method (multiplied by ``max(1, |x_i|)``).
STEPS: Mapping[str, float] = MappingProxyType(
    {"central": EPS ** (1 / 3), "richardson": EPS ** (1 / 5), "complex": 1e-20}
)
#: Rounding noise of one function value, in units of ``EPS * |f|`` (a few digits of slack for
#: the roundoff accumulated while evaluating f).
NOISE_ULPS: float = 64.0
#: Digits used by the ``"exact"`` oracle.
EXACT_DPS: int = 50


@dataclass(frozen=True)
class Tolerance:
    """Combined test ``|a - b| <= atol + rtol * max(|a|, |b|)`` (plus the method's estimate)."""

    rtol: float
    atol: float

    def bound(self, a: Any, b: Any) -> Any:
        """``atol + rtol * max(|a|, |b|)``, element-wise."""
        return self.atol + self.rtol * np.maximum(np.abs(a), np.abs(b))


#: Default gradient tolerances per method (JAX ``check_grads`` style: named, per method).
GRAD_TOLERANCES: Mapping[str, Tolerance] = MappingProxyType(
    {
        "central": Tolerance(rtol=1e-6, atol=1e-9),
        "richardson": Tolerance(rtol=1e-8, atol=1e-11),
        "complex": Tolerance(rtol=1e-10, atol=1e-13),
        "exact": Tolerance(rtol=1e-10, atol=1e-13),
    }
)
#: Default Hessian tolerances per method (the numeric Hessian differences a gradient, so one
#: order of differentiation more than for the gradient: looser).
HESSIAN_TOLERANCES: Mapping[str, Tolerance] = MappingProxyType(
    {
        "central": Tolerance(rtol=1e-5, atol=1e-8),
        "richardson": Tolerance(rtol=1e-7, atol=1e-10),
        "complex": Tolerance(rtol=1e-7, atol=1e-10),
        "exact": Tolerance(rtol=1e-10, atol=1e-13),
    }
)
#: The least default tolerance for a kernel that computes in float32 (``f.dtype`` or
#: ``f.data_dtype``): its derivatives carry float32 rounding (a few ``eps32`` = 1.2e-7 per
#: sample term, more where a sum over samples cancels), so float64's defaults would fail a
#: correct kernel. rtol 1e-4 leaves about 800 ``eps32`` for that cancellation.
FLOAT32_TOLERANCE = Tolerance(rtol=1e-4, atol=1e-7)


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Check:
    """The fields and the text output that both check results share."""

    ok: bool
    max_abs_err: float
    max_rel_err: float
    worst: Any
    analytic: np.ndarray
    numeric: np.ndarray
    method: str
    step: np.ndarray
    notes: tuple[str, ...]
    rtol: float
    atol: float
    abs_err: np.ndarray = field(repr=False)
    rel_err: np.ndarray = field(repr=False)
    tol: np.ndarray = field(repr=False)

    def label(self, i: Any, names: Sequence[str] | None = None) -> str:
        raise NotImplementedError

    def _summary(self, what: str, failed: bool, entries: str, tail: str = "") -> str:
        n_kinks = len(set(self.unverified))  # type: ignore[attr-defined]
        verdict = "ok" if self.ok else "FAILED" if failed else \
            f"NOT VERIFIED ({n_kinks} {entries} at a kink)"
        w = self.label(self.worst) if self.analytic.size else "-"
        return (
            f"{what} check {verdict} (method={self.method}, rtol={self.rtol:.0e}, "
            f"atol={self.atol:.0e}): max rel err {self.max_rel_err:.2e}, "
            f"max abs err {self.max_abs_err:.2e}, worst {w}{tail}"
        )

    def _table(self, idx: list, first: str, width: int, names: Sequence[str] | None,
               max_rows: int | None) -> str:
        """Rows ``idx`` (indices into the arrays), the worst ``max_rows`` of them when given."""
        rows = _row_order(np.array([self.abs_err[i] for i in idx]),
                          np.array([self.tol[i] for i in idx]), max_rows)
        kinks = set(self.unverified)  # type: ignore[attr-defined]
        lines = [self.summary()]  # type: ignore[attr-defined]
        head = f"{first:<{width}} {'analytic':>23} {'numeric':>23} {'abs err':>9} " \
               f"{'rel err':>9} {'tol':>9}  status"
        lines += [head, "-" * len(head)]
        for r in rows:
            i = idx[r]
            status = "kink" if i in kinks else ("ok" if self.abs_err[i] <= self.tol[i] else "FAIL")
            lines.append(
                f"{self.label(i, names):<{width}} {self.analytic[i]:>23.16g} "
                f"{self.numeric[i]:>23.16g} {self.abs_err[i]:>9.2e} {self.rel_err[i]:>9.2e} "
                f"{self.tol[i]:>9.2e}  {status}"
            )
        if max_rows is not None and len(rows) < len(idx):
            lines.append(f"... ({len(idx) - len(rows)} more rows)")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()  # type: ignore[attr-defined]


@dataclass(frozen=True, eq=False)
class GradCheck(_Check):
    """Result of :func:`check_grad`.

    ``analytic``/``numeric`` hold the gradient components (or, in direction mode, the
    directional derivatives ``g.u_k``); ``worst`` is the index of the component with the
    largest error relative to its tolerance (a direction index in direction mode); ``kinks``
    the indices where ``x`` is within a step of a non-smooth point; ``unverified`` those of them
    that no other way could check (a smaller step, the exact oracle). ``ok`` means every
    component was verified and passed: it is False while any component is unverified.
    """

    worst: int
    kinks: tuple[int, ...] = ()
    names: tuple[str, ...] | None = None
    directions: np.ndarray | None = field(default=None, repr=False)
    unverified: tuple[int, ...] = ()

    def label(self, i: int, names: Sequence[str] | None = None) -> str:
        """Human label of component ``i``: the parameter name, or ``u<i>`` in direction mode."""
        return _label_for(self.directions, names if names is not None else self.names, i)

    def summary(self) -> str:
        """One line: verdict, method, worst component."""
        skip = set(self.unverified)
        failed = any(self.abs_err[i] > self.tol[i] for i in range(self.analytic.size)
                     if i not in skip)
        return self._summary("gradient", failed, "component(s)")

    def table(self, names: Sequence[str] | None = None, max_rows: int | None = None) -> str:
        """The check as a text table (one row per component), with summary and notes.

        Rows are ordered as the parameters; with ``max_rows`` only the worst rows are shown.
        """
        return self._table(list(range(self.analytic.size)), "component", 16, names, max_rows)


@dataclass(frozen=True, eq=False)
class HessianCheck(_Check):
    """Result of :func:`check_hessian`.

    ``analytic``/``numeric`` are ``(n, n)`` Hessians, or in direction mode ``(k, n)`` arrays
    whose rows are ``H @ u_k``. ``worst`` is ``(i, j)`` (row ``i`` = direction index in
    direction mode). ``hvp_*`` compare the Kernel's Hessian-vector product at a seeded random
    ``v`` with the numeric derivative of the gradient along ``v`` (NaN / True when the object
    has no ``hvp``). ``asymmetry`` is ``max|H - H.T|`` of the analytic Hessian.
    """

    worst: tuple[int, int]
    kinks: tuple[tuple[int, int], ...] = ()
    hvp_ok: bool = True
    hvp_max_rel_err: float = float("nan")
    hvp_analytic: np.ndarray | None = field(default=None, repr=False)
    hvp_numeric: np.ndarray | None = field(default=None, repr=False)
    asymmetry: float = 0.0
    names: tuple[str, ...] | None = None
    directions: np.ndarray | None = field(default=None, repr=False)
    unverified: tuple[tuple[int, int], ...] = ()

    def label(self, ij: tuple[int, int], names: Sequence[str] | None = None) -> str:
        """Human label of entry ``(i, j)``, e.g. ``d2/dx1 dx2`` or ``(H u3)[x1]``."""
        names = names if names is not None else self.names
        i, j = ij
        if self.directions is not None:
            return f"(H u{i})[{_label_for(None, names, j)}]"
        return f"d2/d{_label_for(None, names, i)} d{_label_for(None, names, j)}"

    def summary(self) -> str:
        """One line: verdict, method, worst entry, HVP verdict."""
        skip = set(self.unverified)
        failed = not self.hvp_ok or any(
            self.abs_err[ij] > self.tol[ij] for ij in np.ndindex(*self.abs_err.shape)
            if ij not in skip)
        hvp = "" if math.isnan(self.hvp_max_rel_err) else (
            f"; hvp {'ok' if self.hvp_ok else 'FAILED'} (max rel err {self.hvp_max_rel_err:.2e})"
        )
        return self._summary("hessian", failed, "entries", hvp)

    def table(self, names: Sequence[str] | None = None, max_rows: int | None = None) -> str:
        """The check as a text table (one row per Hessian entry, upper triangle when square)."""
        k, n = self.analytic.shape
        if self.directions is None:
            iu = np.triu_indices(k)
            idx = list(zip(iu[0].tolist(), iu[1].tolist(), strict=True))
        else:
            idx = [(i, j) for i in range(k) for j in range(n)]
        return self._table(idx, "entry", 24, names, max_rows)


def _row_order(abs_err: np.ndarray, tol: np.ndarray, max_rows: int | None) -> list[int]:
    n = abs_err.size
    if max_rows is None or max_rows >= n:
        return list(range(n))
    ratio = np.where(tol > 0, abs_err / np.where(tol > 0, tol, 1.0), np.inf)
    ratio = np.nan_to_num(ratio, nan=np.inf)
    keep = np.argsort(-ratio, kind="stable")[:max_rows]
    return sorted(int(i) for i in keep)


# --------------------------------------------------------------------------------------------
# Targets: Kernel (duck-typed) or plain callables
# --------------------------------------------------------------------------------------------


def _errors(a: np.ndarray, b: np.ndarray, est: np.ndarray, tol: Tolerance
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with np.errstate(invalid="ignore", over="ignore"):  # non-finite entries: set below
        abs_err = np.abs(a - b)
        mag = np.maximum(np.abs(a), np.abs(b))
        rel_err = abs_err / np.maximum(mag, TINY)
        limit = tol.atol + tol.rtol * mag + est
    bad = ~np.isfinite(a) | ~np.isfinite(b)
    abs_err = np.where(bad, np.inf, abs_err)
    rel_err = np.where(bad, np.inf, rel_err)
    limit = np.where(bad | ~np.isfinite(limit), 0.0, limit)  # inf <= inf passed an inf gradient
    return abs_err, rel_err, limit


def _worst(abs_err: np.ndarray, limit: np.ndarray, mask: np.ndarray) -> int:
    if abs_err.size == 0:
        return 0
    ratio = np.where(mask, abs_err / np.maximum(limit, TINY), -1.0)
    return int(np.argmax(ratio))


def _tolerance(table: Mapping[str, Tolerance], method: str, rtol: float | None,
               atol: float | None, float32: bool = False) -> Tolerance:
    """The method's default (at least :data:`FLOAT32_TOLERANCE` for a float32 kernel), or the
    caller's ``rtol``/``atol``."""
    d = table[method]
    if float32:
        d = Tolerance(max(d.rtol, FLOAT32_TOLERANCE.rtol), max(d.atol, FLOAT32_TOLERANCE.atol))
    return Tolerance(_given("rtol", rtol, d.rtol), _given("atol", atol, d.atol))


def _given(name: str, value, default: float) -> float:
    """A caller's tolerance: a finite number >= 0 (a negative one fails every component)."""
    if value is None:
        return default
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number >= 0, got {value!r}") from None
    if not (np.isfinite(v) and v >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return v
