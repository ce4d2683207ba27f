"""symgrad: exact symbolic derivatives of SymPy losses, printed as Numba kernels.

>>> import symgrad as sg
>>> x1, x2 = sg.params("x1 x2")
>>> f = sg.compile(100*(x2 - x1**2)**2 + (1 - x1)**2)
>>> f.value([-1.0, 2.0])
104.0
"""

from . import distributed, lsq, metrics, testing
from .ad.derive import KinkPolicy
from .api import compile, generate, grad, hessian, jacobian
from .check import GradCheck, HessianCheck, check_grad, check_hessian
from .distributed import DaskKernel
from .ir.functions import (
    log_softmax,
    logsumexp,
    relu,
    sigmoid,
    softmax,
    softplus,
)
from .ir.graph import ShapeError
from .ir.problem import ProblemError
from .lang import losses
from .lang.elementwise import (
    abs,
    cos,
    cosh,
    erf,
    exp,
    expm1,
    log,
    log1p,
    max,
    sin,
    sinh,
    sqrt,
    tan,
    tanh,
)
from .lang.ops import einsum
from .lang.symbols import data, index, mean, params, sum
from .lsq import LeastSquaresResult, ResidualKernel, compile_residuals, curve_fit, least_squares
from .runtime.array import ArrayKernel
from .runtime.base import Kernel
from .runtime.blas import set_blas_threads
from .runtime.bound import Bound, BoundResiduals
from .runtime.model import ModelKernel
from .scipy_interop import scipy_objective
from .train import OptimizeResult, minimize, optim, schedules
from .version import __version__

#: The former name of :class:`Bound` (kept for existing code).
BoundKernel = Bound

__all__ = [
    "ArrayKernel",
    "Bound",
    "BoundKernel",
    "BoundResiduals",
    "DaskKernel",
    "GradCheck",
    "HessianCheck",
    "Kernel",
    "KinkPolicy",
    "LeastSquaresResult",
    "ModelKernel",
    "OptimizeResult",
    "ProblemError",
    "ResidualKernel",
    "ShapeError",
    "__version__",
    "abs",
    "check_grad",
    "check_hessian",
    "compile",
    "compile_residuals",
    "cos",
    "cosh",
    "curve_fit",
    "data",
    "distributed",
    "einsum",
    "erf",
    "exp",
    "expm1",
    "generate",
    "grad",
    "hessian",
    "index",
    "jacobian",
    "least_squares",
    "log",
    "log1p",
    "log_softmax",
    "logsumexp",
    "losses",
    "lsq",
    "max",
    "mean",
    "metrics",
    "minimize",
    "optim",
    "params",
    "relu",
    "schedules",
    "scipy_objective",
    "set_blas_threads",
    "sigmoid",
    "sin",
    "sinh",
    "softmax",
    "softplus",
    "sqrt",
    "sum",
    "tan",
    "tanh",
    "testing",
]
