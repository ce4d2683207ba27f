"""Derivatives -> the text of a standalone Python module (deterministic bytes).

The rooms: :mod:`.scalar` assembles a scalar loss's module (:func:`module_source`), with the
sample-loop functions in :mod:`.samples` and the indexed sums over parameter vectors in
:mod:`.vectors`; :mod:`.helpers` holds the helper functions a module may call and emits only
those it uses; :mod:`.names` makes identifiers; :mod:`.text` has the header and function text.
The array modules (:mod:`symgrad.arrays.codegen`) and the least-squares modules reuse these
pieces through the names re-exported here.
"""

from ..derive import Derivatives, Tmp
from ..printer import ComplexPrinter, ScalarPrinter
from .helpers import COMPLEX_HELPERS, HELPERS, _lse_helper, helpers_for
from .names import (
    _GENERATED,
    _MODULE_NAMES,
    RESERVED,
    CodegenOptions,
    _column_args,
    _ident,
    _TmpNames,
)
from .scalar import _Gen, module_source
from .text import _JIT, _depends, _esc, _fn, _hessian_fn, _off, _Text, header

__all__ = ["CodegenOptions", "header", "helpers_for", "module_source"]
__all__ += ["COMPLEX_HELPERS", "HELPERS", "RESERVED", "_GENERATED", "_JIT", "_MODULE_NAMES",
            "_Gen", "_Text", "_TmpNames", "_column_args", "_depends", "_esc", "_fn",
            "_hessian_fn", "_ident", "_lse_helper", "_off"]
# the printers and derivative types the module text is made from (importable from here before)
__all__ += ["ComplexPrinter", "Derivatives", "ScalarPrinter", "Tmp"]
