"""Seeded random directions (check along k unit vectors instead of every coordinate)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def _directions(directions: Any, n: int, seed: int) -> np.ndarray | None:
    if directions is None:
        return None
    if isinstance(directions, int | np.integer):
        k = int(directions)
        if k < 1:
            raise ValueError(f"directions must be a positive int or a (k, n) array; got {k}")
        u = np.random.default_rng(seed).standard_normal((k, n))
    else:
        u = np.array(directions, dtype=np.float64)
        if u.ndim == 1:
            u = u[None, :]
        if u.ndim != 2 or u.shape[1] != n:
            raise ValueError(f"directions array must have shape (k, {n}); got {u.shape}")
    norms = np.linalg.norm(u, axis=1)
    if np.any(norms == 0):
        raise ValueError("directions must be non-zero vectors")
    return u / norms[:, None]


def _label_for(U: np.ndarray | None, names: Sequence[str] | None, i: int) -> str:
    if U is not None:
        return f"u{i}"
    return str(names[i]) if names is not None and i < len(names) else f"x[{i}]"
