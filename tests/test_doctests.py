"""The runnable examples in the docstrings of the array modules run as written."""

import doctest
import importlib

import pytest

MODULES = ["symgrad.arrays.graph", "symgrad.arrays.dims", "symgrad.arrays.ops",
           "symgrad.arrays.autodiff", "symgrad.arrays.problem", "symgrad.arrays.codegen",
           "symgrad.arrays.formula", "symgrad.arrays.kernel", "symgrad.elementwise",
           "symgrad.distributed.worker", "symgrad.distributed.columns",
           "symgrad.distributed.kernel", "symgrad.distributed.detect", "symgrad.distributed.sgd"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    res = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert res.attempted > 0 and res.failed == 0
