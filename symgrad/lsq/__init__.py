"""Least squares: residual problems compiled to residuals, Jacobians and fused normal equations;
Levenberg–Marquardt on them, statistics, curve_fit.

Kernel side: :func:`compile_residuals` -> :class:`ResidualKernel`. Solver side:
:func:`least_squares`, :func:`curve_fit`, :func:`to_scipy`, :class:`LeastSquaresResult`, and
:class:`ReferenceResiduals` (a NumPy residual kernel with the compiled kernel's interface).

>>> import symgrad as sg
>>> a = sg.params("a"); t = sg.data("t")
>>> sg.compile_residuals(a - t).params
('a',)
"""

from ..build.residual import compile_residuals
from ..runtime.array_residual import ArrayResiduals
from ..runtime.residual import BoundResiduals, ResidualKernel
from .api import as_kernel, curve_fit, least_squares, to_scipy
from .reference import ReferenceResiduals
from .result import LeastSquaresResult, UnidentifiableWarning

__all__ = ["ArrayResiduals", "BoundResiduals", "LeastSquaresResult", "ReferenceResiduals",
           "ResidualKernel",
           "UnidentifiableWarning", "as_kernel", "compile_residuals", "curve_fit",
           "least_squares", "to_scipy"]
