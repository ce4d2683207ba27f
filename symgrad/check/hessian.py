"""check_hessian: the analytic Hessian (and HVP) against differences of the gradient."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .differences import (
    _base_step,
    _complex_grad,
    _diff_method,
    _dir_line,
    _line,
    _scheme,
    _step_along,
)
from .directions import _directions, _label_for
from .exact import _exact_hessian
from .kinks import _jump, _kink_probe, _numeric_kink, _smaller_step, _stencil_kinks
from .report import HESSIAN_TOLERANCES, HessianCheck, Method, _errors, _tolerance, _worst
from .target import _as_point, _resolve_method, _target, float32_note
from .unroll import FALLBACK_MAX_COST


def check_hessian(
    f: Any,
    x: Any,
    data: Mapping[str, Any] | None = None,
    method: Method = "auto",
    directions: int | Any | None = None,
    seed: int = 0,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    step: float | None = None,
    names: Sequence[str] | None = None,
    hvp: bool = True,
) -> HessianCheck:
    """Compare the analytic Hessian (and Hessian-vector product) with numeric ones.

    The numeric Hessian differences a gradient along each coordinate (or direction):
    ``"central"``/``"richardson"`` difference the analytic gradient ``f.grad``; ``"complex"``
    differences (Richardson) a complex-step gradient built from ``f.value_complex`` alone;
    ``"exact"`` differentiates ``f.expr`` twice at 50 digits. ``"auto"`` is ``"richardson"``
    (``"exact"`` for float32 kernels, and for residual kernels, whose Hessian is Gauss-Newton).

    Args:
        f: a Kernel (``.grad``, ``.hessian``, optional ``.hvp``) or a tuple ``(grad, hess)`` or
            ``(grad, hess, hvp)`` of callables ``grad(x, **data) -> (n,)``,
            ``hess(x, **data) -> (n, n)``, ``hvp(x, v, **data) -> (n,)``. ``hess`` may be None
            when ``hvp`` is given and ``directions`` is used.
        directions: ``k`` compares ``H @ u`` (via ``hvp`` when available) for ``k`` seeded random
            unit directions with the numeric derivative of the gradient along ``u``.
        hvp: also check ``f.hvp`` at a seeded random vector (when ``f`` has one).
        Other arguments as :func:`check_grad`; defaults in :data:`HESSIAN_TOLERANCES`.

    Example:
        >>> import numpy as np
        >>> grad = lambda x: np.array([2 * x[0] * x[1], x[0]**2])
        >>> hess = lambda x: np.array([[2 * x[1], 2 * x[0]], [2 * x[0], 0.0]])
        >>> check_hessian((grad, hess), [1.0, 3.0]).ok
        True
    """
    x = _as_point(x)
    n = x.size
    t = _target(f, data, n, hessian=True, names=names)
    m = _resolve_method(method, t, hessian=True)
    if m == "complex" and t.fun_complex is None:
        raise ValueError("method='complex' for the Hessian needs a Kernel with value_complex")
    tol = _tolerance(HESSIAN_TOLERANCES, m, rtol, atol, t.float32)
    U = _directions(directions, n, seed)
    notes: list[str] = float32_note(t, m)

    # analytic
    asym = 0.0
    if U is None:
        if t.hess is None:
            raise ValueError("check_hessian needs a Hessian (f.hessian or hess) unless directions "
                             "is given with an hvp")
        H = t.hess(x)
        if H.shape != (n, n):
            raise ValueError(f"the Hessian has shape {H.shape}; expected ({n}, {n})")
        with np.errstate(invalid="ignore"):  # inf - inf: a non-finite entry, reported below
            asym = float(np.max(np.abs(H - H.T))) if n else 0.0
        A = H
        rows = np.eye(n)
    else:
        if t.hvp is not None:
            A = np.array([t.hvp(x, u) for u in U])
        else:
            assert t.hess is not None
            A = U @ t.hess(x).T
        rows = U
    k_items = rows.shape[0]

    def extra(r: int) -> float:  # rounding of x + t*u moves the point along a direction
        return 0.0 if U is None else float(np.max(np.abs(A[r]))) * float(np.max(np.abs(x)))

    # numeric: row r of A is d/ds grad(x + s*rows[r]) (H symmetric: column = row)
    gfun = _complex_grad(t.fun_complex, n, step) if m == "complex" else t.grad  # type: ignore
    # differences of a complex-step gradient take Richardson's default steps
    dm, dstep = _diff_method(m), step if m != "complex" else None
    est = np.zeros((k_items, n))
    steps = np.zeros(k_items)
    kink = np.zeros((k_items, n), dtype=bool)
    if m == "exact":
        He = _exact_hessian(t.kernel, x, t.data)
        num = He if U is None else U @ He
    else:
        scheme = _scheme(m)
        g0 = gfun(x)
        num = np.empty((k_items, n))
        fwd, bwd, fnoise = (np.empty((k_items, n)) for _ in range(3))
        for r in range(k_items):
            dd = scheme(_line(gfun, x, U, r), g0, _step_along(dm, x, U, r, dstep), extra(r))
            num[r], est[r], fwd[r], bwd[r], steps[r] = dd.d, dd.err, dd.fwd, dd.bwd, dd.step
            fnoise[r] = dd.noise
        kink |= _numeric_kink(A, fwd, bwd, fnoise, tol.bound(A, num))
        if U is None:  # a jump in column j shows up in entry (j, i) too
            kink |= kink.T

    abs_err, rel_err, limit = _errors(A, num, est, tol)

    probe = _kink_probe(t, n)
    kink |= _stencil_kinks(probe, x, rows, steps, m)[:, None]
    if U is None:
        kink |= kink.T

    # Rows near a kink: retry with smaller steps (as check_grad); an entry is verified when its
    # row, or (square H, symmetric by the asymmetry check) its transposed row, is.
    verified = np.zeros(k_items, dtype=bool)
    if m != "exact" and np.any(kink):
        for r in np.flatnonzero(kink.any(axis=1)):
            dd, _, agrees = _smaller_step(scheme, _line(gfun, x, U, r), g0, steps[r], extra(r),
                                          A[r], tol, probe, x, rows[r], m,
                                          jump0=_jump(A[r], num[r], fwd[r], bwd[r], fnoise[r],
                                                      tol))
            if dd is not None:  # a line clear of the kinks: its verdict stands for the row
                num[r], est[r], steps[r], verified[r] = dd.d, dd.err, dd.step, agrees
                if not agrees:
                    kink[r] = False  # a plain failure, not an unverifiable entry
        if U is None:  # entry (i, j) of a kinked row i from the verified row j
            swap = kink & ~verified[:, None] & verified[None, :]
            num[swap], est[swap] = num.T[swap], est.T[swap]
        abs_err, rel_err, limit = _errors(A, num, est, tol)
    done = verified[:, None] | (verified[None, :] if U is None else False)
    unverified = kink & ~done
    He = None  # the exact Hessian, when consulted for entries beside kinks that depend on data
    if probe.data_dependent and probe.any_kinks and m != "exact" and t.kernel is not None:
        # as check_grad: kinks that depend on data are invisible to the symbolic probe, so an
        # entry still failing is checked against the exact oracle (kinks resolved at x)
        bad = ~(abs_err <= limit) & ~kink & np.isfinite(A)
        if np.any(bad):
            with contextlib.suppress(NotImplementedError):  # no oracle, or too big for it
                He = _exact_hessian(t.kernel, x, t.data, max_cost=FALLBACK_MAX_COST)
        if He is not None:
            ex = He if U is None else U @ He
            etol = _tolerance(HESSIAN_TOLERANCES, "exact", None, None, t.float32)
            agree = bad & (np.abs(A - ex) <= etol.bound(A, ex))
            num[agree], est[agree] = ex[agree], 0.0
            abs_err, rel_err, limit = _errors(A, num, est, tol)
            if np.any(agree):
                notes.append(f"{int(agree.sum())} Hessian entries verified against the exact "
                             "derivative (kinks that depend on data lie within the difference "
                             "step; the oracle resolves them at x with the kernel's KinkPolicy)")
    if m == "exact":  # the oracle at the kink itself (SymPy's conventions)
        unverified &= ~(abs_err <= limit)
    notes_k = [(int(i), int(j)) for i, j in zip(*np.nonzero(kink), strict=True)]
    if notes_k:
        where = sorted({i for i, _ in notes_k})
        lab = ", ".join(_label_for(U, t.names, i) for i in where)
        notes.append(f"x is within the difference step of a non-smooth point along {lab}: "
                     "checked again with smaller steps where possible")
    if np.any(unverified):
        notes.append(f"not verified: {int(unverified.sum())} Hessian entries where x sits at a "
                     "kink (second derivatives there are a convention, 0); the verdict is not "
                     "ok until they are checked: move x off the kink")
    if U is None and asym > tol.atol + tol.rtol * float(np.max(np.abs(A), initial=0.0)):
        notes.append(f"the analytic Hessian is not symmetric: max|H - H.T| = {asym:.3e}")

    mask = ~unverified
    ok = bool(np.all(abs_err[mask] <= limit[mask])) and not np.any(unverified)
    if U is None and asym > 10 * (tol.atol + tol.rtol * float(np.max(np.abs(A), initial=0.0))):
        ok = False

    # Hessian-vector product
    hvp_ok, hvp_err, hvp_a, hvp_n = True, float("nan"), None, None
    if hvp and t.hvp is not None and U is None and n:
        v = np.random.default_rng(seed + 1).standard_normal(n)
        v /= np.linalg.norm(v)
        hvp_a = t.hvp(x, v)
        if m == "exact" or He is not None:  # the exact product (beside data kinks: no steps)
            hvp_n = (num if m == "exact" else He) @ v
            hest = np.zeros(n)
        else:
            h = _base_step(dm, float(np.max(np.abs(x))), dstep)
            extra_v = float(np.max(np.abs(A))) * float(np.max(np.abs(x))) if A.size else 0.0
            dd = scheme(_dir_line(gfun, x, v), gfun(x), h, extra_v)
            hvp_n, hest = dd.d, dd.err
            if np.any(kink):
                hest = hest + np.abs(dd.fwd - dd.bwd)  # a kink inside the step: widen
        ha, hr, hl = _errors(hvp_a, hvp_n, hest, tol)
        # also against H @ v (same code path as the Hessian; catches hvp-only bugs precisely)
        hb, hbr, hbl = _errors(hvp_a, A @ v, np.zeros(n), tol)
        if np.any(kink):
            # a random direction crosses the kink found above: differences along it are not a
            # reference, so the product is checked against the analytic Hessian only
            hvp_ok, hvp_err = bool(np.all(hb <= hbl)), float(np.max(hbr))
            notes.append("the Hessian-vector product is checked against H @ v only: the random "
                         "direction crosses the non-smooth point")
        else:
            num_ok, by_h = bool(np.all(ha <= hl)), bool(np.all(hb <= hbl + hl))
            # H @ v is a reference only for a Hessian that passed: beside a wrong one, an hvp
            # that matches the numeric product is right (the Hessian entries carry the failure)
            hvp_ok = num_ok and (by_h or not ok)
            hvp_err = float(np.max(hr if hvp_ok or not num_ok else np.maximum(hr, hbr)))
            if num_ok and not by_h:
                notes.append(
                    "the Hessian-vector product agrees with the numeric derivative of the "
                    "gradient along a random v but not with H @ v "
                    f"(max rel err {float(np.max(hbr)):.2e}): "
                    + ("the Hessian is wrong, not the hvp" if not ok else
                       "the Hessian passed within its tolerance, so one of the two is wrong"))
        if not hvp_ok and not np.all(ha <= hl):
            notes.append("the Hessian-vector product disagrees with the numeric derivative of the "
                         "gradient along a random v")
        ok = ok and hvp_ok

    checked = abs_err[mask]
    w = _worst(abs_err.ravel(), limit.ravel(), mask.ravel())
    return HessianCheck(
        ok=ok,
        max_abs_err=float(checked.max()) if checked.size else 0.0,
        max_rel_err=float(rel_err[mask].max()) if checked.size else 0.0,
        worst=(w // n, w % n) if n else (0, 0),
        analytic=A, numeric=num, method=m, step=steps, notes=tuple(notes),
        rtol=tol.rtol, atol=tol.atol, abs_err=abs_err, rel_err=rel_err, tol=limit,
        kinks=tuple(notes_k), hvp_ok=hvp_ok, hvp_max_rel_err=hvp_err,
        unverified=tuple((int(i), int(j)) for i, j in zip(*np.nonzero(unverified), strict=True)),
        hvp_analytic=hvp_a, hvp_numeric=hvp_n, asymmetry=asym, names=t.names, directions=U,
    )
