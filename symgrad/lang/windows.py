"""Windows and gathers: the smart constructors of ints and slices (``W[0, 3]``, ``u[1:, :]``),
rows picked per sample by an integer data column (``U[i]``), and their adjoints.

>>> from symgrad.ir.graph import Leaf
>>> u = Leaf("param", "u", (5, 4))
>>> window(u, (slice(1, None), slice(None))).shape
(4, 4)
"""

from __future__ import annotations

from ..ir.graph import Dim, Gather, Leaf, N, Node, Pad, Scatter, ShapeError, Window

__all__ = ["gather", "pad", "scatter", "window"]


def window(arg: Node, key: tuple) -> Node:
    """``arg[key]`` for ints and step-1 slices on the non-sample axes (bounds checked now)."""
    lead = 1 if arg.per_sample else 0
    rest = arg.shape[lead:]
    if len(key) != len(rest):
        raise ShapeError(f"{arg!r} takes {len(rest)} indices per sample, got {len(key)}")
    spec, shape = [], list(arg.shape[:lead])
    for ax, (k, n) in enumerate(zip(key, rest, strict=True)):
        if isinstance(k, slice):
            start, stop, step = k.indices(int(n))
            if step != 1 or stop <= start:
                raise ShapeError(f"slice {k.start}:{k.stop}:{k.step} of axis {ax} of {arg!r} "
                                 f"(size {n}): only non-empty step-1 slices are supported")
            spec.append((start, int(n) - stop))  # (start, elements trimmed at the end)
            shape.append(n if (start, stop) == (0, n) else Dim.part(n, start, n - stop))
        elif isinstance(k, int) and not isinstance(k, bool):
            if not -n <= k < n:
                raise ShapeError(f"index {k} is out of range for axis {ax} of {arg!r} "
                                 f"(size {n})")
            spec.append(k % n)
        else:
            raise ShapeError(f"index {k!r} of axis {ax} of {arg!r}: use an int, a slice such as "
                             "1: or :-1, or an integer data array (a gather, on axis 0)")
    if all(w == (0, 0) for w in spec):
        return arg
    return Window(arg, tuple(spec), tuple(shape))


def pad(arg: Node, spec: tuple, shape: tuple) -> Node:
    """Zeros of ``shape`` holding ``arg`` in the window ``spec`` (the adjoint of a window)."""
    return Pad(arg, tuple(spec), tuple(shape))


def gather(src: Node, idx: Node) -> Node:
    """``src[idx]``: per sample, the row of ``src`` that the integer data array ``idx`` names."""
    if src.per_sample or not src.ndim:
        raise ShapeError(f"{src!r}[{idx!r}]: gathers pick rows of a parameter array")
    if not (isinstance(idx, Leaf) and idx.role == "index" and idx.shape == (N,)):
        raise ShapeError(f"{src!r}[{idx!r}]: the index must be an integer data column, "
                         "declared with sg.data(name, dtype=int)")
    return Gather(src, idx)


def scatter(arg: Node, idx: Node, shape: tuple) -> Node:
    """Per-sample rows of ``arg`` added into zeros of ``shape`` at rows ``idx``."""
    return Scatter(arg, idx, tuple(shape))
