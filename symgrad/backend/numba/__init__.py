"""Derivatives -> the text of a standalone Python module (deterministic bytes).

The rooms: :mod:`.skeleton` is what every generated module shares (header, preamble, decorators
and the fastmath policy, helper emission, the Hessian from HVPs, the chunk size); :mod:`.scalar`
assembles a scalar loss's module (:func:`module_source`), with the sample-loop functions in
:mod:`.samples` and the indexed sums over parameter vectors in :mod:`.vectors`; :mod:`.helpers`
holds the helper functions a module may call; :mod:`.names` makes identifiers; :mod:`.text` has
the scalar header. The array, model and least-squares generators build on :mod:`.skeleton`.
"""

from ...ad.derive import Derivatives, Tmp
from .helpers import COMPLEX_HELPERS, HELPERS, helpers_for
from .names import _MODULE_NAMES, RESERVED, CodegenOptions
from .printer import ComplexPrinter, ScalarPrinter
from .scalar import module_source
from .text import header

__all__ = ["COMPLEX_HELPERS", "HELPERS", "RESERVED", "CodegenOptions", "header", "helpers_for",
           "module_source"]
# the column-name table tests check generated identifiers against
__all__ += ["_MODULE_NAMES"]
# the printers and derivative types the module text is made from (importable from here before)
__all__ += ["ComplexPrinter", "Derivatives", "ScalarPrinter", "Tmp"]
