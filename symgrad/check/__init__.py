"""Gradient and Hessian checker: finite differences, complex step, exact (50-digit) oracle.

The rooms: :mod:`.grad` (check_grad) and :mod:`.hessian` (check_hessian) compose
:mod:`.target` (what is checked), :mod:`.differences` (numeric derivatives along a line),
:mod:`.directions` (seeded random directions), :mod:`.kinks` (non-smooth points),
:mod:`.exact`/:mod:`.unroll`/:mod:`.mpeval` (the 50-digit oracle) and :mod:`.report`
(tolerances, result types, tables).

The checker compares an *analytic* derivative (a symgrad Kernel, or any pair of plain callables)
with an independent *numeric* one and reports per-component errors. It never asserts; use
:mod:`symgrad.testing` for assertions in a test suite.

Methods (``method=``):

- ``"central"``     central differences, relative step ``h = EPS**(1/3) * max(1, |x_i|)``.
- ``"richardson"``  central differences at ``h, h/2, h/4`` extrapolated twice (error O(h**6)),
                    ``h = 2**round(log2(EPS**(1/5) * max(1, |x_i|)))``.
- ``"complex"``     complex step ``Im f(x + i*h*e_i) / h`` with ``h = 1e-20 * max(1, |x_i|)``:
                    no cancellation, accurate to rounding; needs ``f.value_complex`` (an analytic
                    Kernel) or a complex-safe plain ``fun``.
- ``"exact"``       the exact derivative (``sympy.diff``) evaluated with mpmath at 50 digits, of
                    ``f.expr`` or, for losses with data, array and residual kernels, of the loss
                    unrolled over the data (:mod:`.unroll`; too big an unrolling is refused,
                    naming its size); kinks resolved at ``x`` with the kernel's KinkPolicy,
                    float literals taken as their exact binary values.
- ``"auto"``        ``"exact"`` for a Kernel computing in float32 (its value's rounding swamps
                    differences), else ``"complex"`` for an analytic Kernel, else
                    ``"richardson"``.

Per component: ``abs_err = |g - g_num|``, ``rel_err = abs_err / max(|g|, |g_num|, TINY)``.
A component passes when ``abs_err <= atol + rtol * max(|g|, |g_num|) + est`` where ``est`` is the
numeric method's own error estimate (rounding noise plus, for differences, the truncation error
measured from a second step size; zero for complex step and exact). Defaults per method are in
:data:`GRAD_TOLERANCES` / :data:`HESSIAN_TOLERANCES`; a float32 kernel's are at least
:data:`~symgrad.check.report.FLOAT32_TOLERANCE` (rtol 1e-4, atol 1e-7).

Kinks: when ``x`` lies within the difference step of a non-smooth point (Abs, Max, Min, relu, sign,
Heaviside, floor, ceiling, Piecewise conditions), the affected components are checked again with
smaller steps (until the stencil holds no kink) or against the exact oracle; those that sit on a
kink stay unverified (``GradCheck.unverified``), and then ``ok`` is False: "ok" means every
component was verified. Kinks are found symbolically from ``f.expr`` when available, and
numerically for any callable (the one-sided differences jump and the analytic value matches one
side).

Example:
    >>> import numpy as np
    >>> fun = lambda x: 100 * (x[1] - x[0]**2)**2 + (1 - x[0])**2
    >>> grad = lambda x: np.array([-400*x[0]*(x[1] - x[0]**2) - 2*(1 - x[0]), 200*(x[1] - x[0]**2)])
    >>> chk = check_grad((fun, grad), [-1.0, 2.0], method="central")
    >>> chk.ok, chk.worst in (0, 1)
    (True, True)
"""

from .grad import check_grad
from .hessian import check_hessian
from .kinks import kink_arguments
from .report import (
    EPS,
    EXACT_DPS,
    GRAD_TOLERANCES,
    HESSIAN_TOLERANCES,
    METHODS,
    NOISE_ULPS,
    STEPS,
    TINY,
    GradCheck,
    HessianCheck,
    Method,
    Tolerance,
)

__all__ = [
    "EPS",
    "GRAD_TOLERANCES",
    "HESSIAN_TOLERANCES",
    "TINY",
    "GradCheck",
    "HessianCheck",
    "Tolerance",
    "check_grad",
    "check_hessian",
    "kink_arguments",
]
__all__ += ["EXACT_DPS", "METHODS", "NOISE_ULPS", "STEPS", "Method"]
