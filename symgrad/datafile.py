"""Data files of the command line: ``.csv`` with a header row of column names, or ``.npz``.

>>> import tempfile, pathlib
>>> p = pathlib.Path(tempfile.mkdtemp()) / "d.csv"
>>> _ = p.write_text("t,t,y\\n1,2,3\\n")
>>> try:
...     read_data_file(p)
... except ValueError as exc:
...     print(str(exc).split(": ", 1)[1])
the column name 't' appears twice in the header (columns 1 and 2): rename one
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

__all__ = ["read_data_file"]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_data_file(path: str | Path) -> dict[str, np.ndarray]:
    """Columns from a ``.csv`` (a header row of names, comma separated) or a ``.npz`` file.

    Any name is accepted (only the names a loss uses must be valid in an expression); an
    empty or numeric name means the header row is missing, a repeated one is an error."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"data file {path} not found")
    if path.suffix == ".npz":
        with np.load(path) as z:
            return {k: np.asarray(z[k], dtype=np.float64) for k in z.files}
    if path.suffix not in (".csv", ".txt"):
        raise ValueError(f"data file {path}: use a .csv (header row of column names) or .npz file")
    with path.open(encoding="utf-8-sig") as fh:  # a spreadsheet's byte-order mark is not a name
        header = fh.readline()
    names = [h.strip() for h in header.split(",")]
    if not all(n and not _is_number(n) for n in names):
        raise ValueError(f"data file {path}: the first row must name the columns, got {header!r}")
    for k, n in enumerate(names):
        if n in names[:k]:
            raise ValueError(f"data file {path}: the column name '{n}' appears twice in the "
                             f"header (columns {names.index(n) + 1} and {k + 1}): rename one")
    try:
        with warnings.catch_warnings():  # no rows: said below, not as NumPy's warning
            warnings.simplefilter("ignore", UserWarning)
            arr = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2, dtype=np.float64,
                             encoding="utf-8-sig")
    except ValueError as exc:
        raise ValueError(f"data file {path}: {exc}") from None
    if arr.size == 0:
        raise ValueError(f"data file {path} has a header row but no data rows")
    if arr.shape[1] != len(names):
        raise ValueError(f"data file {path}: {len(names)} names but {arr.shape[1]} columns")
    return {n: arr[:, i].copy() for i, n in enumerate(names)}
