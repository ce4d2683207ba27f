"""The runnable examples in the docstrings of every symgrad module run as written.

The modules are discovered, not listed: a new module's examples run without touching this file.
"""

import doctest
import importlib
import pkgutil

import pytest

import symgrad

MODULES = sorted(m.name for m in pkgutil.walk_packages(symgrad.__path__, "symgrad.")
                 if m.name != "symgrad.__main__")
#: Extras that a module's import may need (installed by the ``dev`` extra, as in CI).
OPTIONAL = {"dask", "distributed", "matplotlib", "tqdm", "sklearn"}


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    try:
        mod = importlib.import_module(name)
    except ImportError as exc:  # an optional extra that is not installed
        if exc.name and exc.name.split(".")[0] in OPTIONAL:
            pytest.skip(f"{name} needs the optional {exc.name}")
        raise
    res = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert res.failed == 0


def test_the_public_modules_have_examples():
    """Each stage's main modules show a runnable example (the house rule)."""
    finder = doctest.DocTestFinder()
    main = ("symgrad.api", "symgrad.runtime.scalar", "symgrad.train.run", "symgrad.lsq.api",
            "symgrad.lang.ops", "symgrad.check.grad", "symgrad.distributed.kernel")
    without = [n for n in main
               if not any(t.examples for t in finder.find(importlib.import_module(n)))]
    assert without == []
