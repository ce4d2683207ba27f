"""What the command-line tools share: the user-error type, the parser, vector and name lists.

Imported by :mod:`symgrad.cli` and the ``fit`` command (:mod:`symgrad.lsq.command`), so neither
imports the other to parse its arguments.

>>> parse_vector("1,2.5 -3").tolist()
[1.0, 2.5, -3.0]
"""

from __future__ import annotations

import argparse
from typing import NoReturn

import numpy as np

__all__ = ["CLIError", "parse_vector"]


class CLIError(Exception):
    """A user error: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (and the usual exit status 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def parse_vector(text: str, what: str = "vector") -> np.ndarray:
    """``"1,2.5 -3"`` -> ``array([1., 2.5, -3.])``."""
    parts = text.replace(",", " ").split()
    try:
        v = np.array([float(p) for p in parts], dtype=np.float64)
    except ValueError:
        raise CLIError(f"{what} must be numbers separated by commas, got {text!r}") from None
    if v.size == 0:
        raise CLIError(f"{what} is empty")
    if not np.all(np.isfinite(v)):
        raise CLIError(f"{what} must be finite, got {text!r}")
    return v


def _names(text: str | None) -> list[str] | None:
    return None if text is None else text.replace(",", " ").split()
