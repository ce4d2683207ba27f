"""Names in a loss string against the columns of a data file: misspellings are errors.

With a data file, the command line makes every name of the loss that is not a column a
parameter, so a misspelt column (``Y`` for ``y``) would silently be fitted as a parameter.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from .lang.parse import names_in

__all__ = ["check_column_names", "closest"]


def closest(name: str, names: Sequence[str]) -> str | None:
    """The name in ``names`` that ``name`` most likely misspells (same letters in another case
    first, then difflib's closest at ratio >= 0.6), or None.

    >>> closest("Y", ["t", "y"]), closest("tt", ["t", "y"]), closest("a", ["t", "y"])
    ('y', 't', None)
    """
    folded = [c for c in names if c.lower() == name.lower()]
    close = folded or difflib.get_close_matches(name, list(names), n=1, cutoff=0.6)
    return close[0] if close else None


def check_column_names(spec: str, columns: Sequence[str], source: str,
                       data: Sequence[str] | None, params_given: bool) -> None:
    """Raise ValueError for a data name that is not a column, or a would-be parameter that
    misspells a column the loss does not read.

    ``data``: the names given with --data (None: every column of the file is data);
    ``params_given``: --params lists the parameters, so every other name is meant as data or
    is an error anyway.
    """
    if data is not None:
        for name in data:
            if name not in columns:
                close = closest(name, columns)
                hint = f": did you mean '{close}'?" if close else ""
                raise ValueError(f"--data names '{name}', which is not a column of {source} "
                                 f"(columns: {', '.join(columns)}){hint}")
        return
    if params_given:
        return
    used = set(names_in(spec))
    unused = [c for c in columns if c not in used]
    for name in sorted(used - set(columns)):
        close = closest(name, unused)
        if close:
            raise ValueError(
                f"'{name}' is not a column of {source} (columns: {', '.join(columns)}): "
                f"did you mean '{close}'? (to fit a parameter named '{name}', list the "
                "parameters with --params)")
