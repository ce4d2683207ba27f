"""The runnable examples in the docstrings of the array modules run as written."""

import doctest
import importlib

import pytest

MODULES = ["symgrad.datacheck", "symgrad.codegen.helpers", "symgrad.codegen.names",
           "symgrad.codegen.scalar", "symgrad.arrays.graph", "symgrad.arrays.dims",
           "symgrad.arrays.ops", "symgrad.arrays.autodiff", "symgrad.arrays.problem",
           "symgrad.arrays.codegen", "symgrad.arrays.formula", "symgrad.arrays.kernel",
           "symgrad.elementwise", "symgrad.check", "symgrad.check.grad", "symgrad.check.hessian",
           "symgrad.check.kinks", "symgrad.train.optim", "symgrad.train.schedules",
           "symgrad.train.run", "symgrad.train.compiled", "symgrad.train.lbfgs",
           "symgrad.train.newton",
           "symgrad.lsq", "symgrad.lsq.problem", "symgrad.lsq.codegen", "symgrad.lsq.kernel",
           "symgrad.lsq.build",
           "symgrad.lsq.reference", "symgrad.lsq.robust", "symgrad.lsq.qr", "symgrad.lsq.lm",
           "symgrad.lsq.api",
           "symgrad.distributed.worker", "symgrad.distributed.columns",
           "symgrad.distributed.kernel", "symgrad.distributed.detect", "symgrad.distributed.sgd",
           "symgrad.distributed.residuals"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    res = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert res.attempted > 0 and res.failed == 0
