"""symgrad: exact symbolic derivatives of SymPy losses, printed as Numba kernels.

>>> import symgrad as sg
>>> x1, x2 = sg.params("x1 x2")
>>> f = sg.compile(100*(x2 - x1**2)**2 + (1 - x1)**2)
>>> f.value([-1.0, 2.0])
104.0
"""

__version__ = "0.1.0"

from .api import compile, generate, grad, hessian, jacobian
from .derive import KinkPolicy
from .functions import (
    expm1,
    log1p,
    log_softmax,
    logsumexp,
    relu,
    sigmoid,
    softmax,
    softplus,
)
from .kernel import BoundKernel, Kernel
from .problem import ProblemError
from .symbols import data, index, mean, params, sum

__all__ = [
    "BoundKernel",
    "Kernel",
    "KinkPolicy",
    "ProblemError",
    "__version__",
    "compile",
    "data",
    "expm1",
    "generate",
    "grad",
    "hessian",
    "index",
    "jacobian",
    "log1p",
    "log_softmax",
    "logsumexp",
    "mean",
    "params",
    "relu",
    "sigmoid",
    "softmax",
    "softplus",
    "sum",
]
