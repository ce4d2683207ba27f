"""One figure of a benchmark, recorded for ``run_all.py``.

A benchmark script prints its own table for a reader and, next to each figure that the README's
performance table shows, calls :func:`record`. When ``run_all.py`` runs the script it sets
``SYMGRAD_BENCH_RECORD`` to a file, and each call appends one JSON line there; run by hand, the
calls do nothing.

    record("logistic", "value_and_grad / NumPy, 5,000 x 500", 1.08, unit="x", target=1.3)

``target`` with ``better="lower"`` (the default) passes when ``value <= target``; with
``better="higher"`` when ``value >= target``; ``target=None`` is a figure without a target.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Literal

ENV = "SYMGRAD_BENCH_RECORD"


def record(bench: str, figure: str, value: float, *, unit: str = "",
           target: float | None = None, better: Literal["lower", "higher"] = "lower",
           note: str = "") -> None:
    """Append one figure to the file named by ``$SYMGRAD_BENCH_RECORD`` (if set)."""
    path = os.environ.get(ENV)
    if not path:
        return
    if better not in ("lower", "higher"):
        raise ValueError(f"better must be 'lower' or 'higher', got {better!r}")
    row = {"bench": bench, "figure": figure, "value": float(value), "unit": unit,
           "target": None if target is None else float(target), "better": better, "note": note}
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(row) + "\n")


def best(fn: Callable[[], object], repeat: int = 5) -> float:
    """The least wall time of ``repeat`` calls of ``fn`` (seconds)."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)
