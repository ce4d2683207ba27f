"""Least squares: residual problems compiled to residuals, Jacobians and fused normal equations.

>>> import symgrad as sg
>>> a = sg.params("a"); t = sg.data("t")
>>> sg.compile_residuals(a - t).params
('a',)
"""

from .build import compile_residuals
from .kernel import BoundResiduals, ResidualKernel

__all__ = ["BoundResiduals", "ResidualKernel", "compile_residuals"]
