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

__all__ = ["header_names", "read_data_file"]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def header_names(header: str) -> list[str]:
    """The column names of a header row: comma separated, a leading ``#`` (NumPy's
    ``savetxt`` writes ``# t,y``) and an inline ``# comment`` dropped, as ``loadtxt`` drops
    them from the data rows, and the quotes of a quoted name (R's ``write.csv``) removed.

    >>> header_names('# t, "y"  # y in volts')
    ['t', 'y']
    """
    text = header.lstrip()
    text = (text[1:] if text.startswith("#") else text).split("#", 1)[0]
    names = [h.strip() for h in text.split(",")]
    return [n[1:-1].strip() if len(n) >= 2 and n[0] == n[-1] == '"' else n for n in names]


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
    try:
        with path.open(encoding="utf-8-sig") as fh:  # a spreadsheet's byte-order mark: no name
            header = fh.readline()
    except UnicodeDecodeError as exc:
        raise ValueError(f"data file {path} is not UTF-8 text ({exc.reason} at byte "
                         f"{exc.start}): save it as UTF-8 CSV") from None
    names = header_names(header)
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
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"data file {path}: {exc}") from None
    if arr.size == 0:
        raise ValueError(f"data file {path} has a header row but no data rows")
    if arr.shape[1] != len(names):
        raise ValueError(f"data file {path}: {len(names)} names but {arr.shape[1]} columns")
    return {n: arr[:, i].copy() for i, n in enumerate(names)}
