"""Least squares: residual kernels, Levenberg–Marquardt on fused normal equations, statistics.

Solver side: :func:`least_squares`, :func:`curve_fit`, :func:`to_scipy`,
:class:`LeastSquaresResult`, and :class:`ReferenceResiduals` (a NumPy residual kernel with the
compiled kernel's interface).
"""

from .api import as_kernel, curve_fit, least_squares, to_scipy
from .reference import ReferenceResiduals
from .result import LeastSquaresResult, UnidentifiableWarning

__all__ = ["LeastSquaresResult", "ReferenceResiduals", "UnidentifiableWarning", "as_kernel",
           "curve_fit", "least_squares", "to_scipy"]
