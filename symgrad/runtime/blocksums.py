"""The passes over blocks of samples that least squares needs, shared by in-memory kernels and
Dask chunks: the fused normal sums (``JᵀJ, Jᵀr, rᵀr``) and the streamed QR factor of ``[J | r]``
(per chunk on the workers, merged on the client: a tall-skinny QR).

>>> import numpy as np
>>> J, r = np.arange(6.0).reshape(3, 2), np.ones(3)
>>> A, g, rtr = split(normal_sums(lambda x, lo, hi: (J[lo:hi].copy(), r[lo:hi].copy()),
...                               np.zeros(2), 3, 1, 2), 2)
>>> A.tolist(), g.tolist(), rtr
([[20.0, 26.0], [26.0, 35.0]], [6.0, 9.0], 3.0)
"""

from __future__ import annotations

import numpy as np

__all__ = ["neumaier", "normal_sums", "qr_merge", "qr_sums", "split"]


def normal_sums(rows, x: np.ndarray, n: int, m: int, block: int, js=None,
                rs=None) -> np.ndarray:
    """``[JᵀJ (flat), Jᵀr, rᵀr]`` over samples ``0..n-1``: ``rows(x, lo, hi)`` gives a block's
    J rows and residuals, scaled here by ``js``/``rs`` (one per residual, or None); each
    block's sums by BLAS, the block totals added with Neumaier compensation. A non-finite
    datum makes the sums non-finite quietly: the caller's check names it."""
    P = x.shape[0]
    acc, err, part = np.zeros(P * P + P + 1), np.zeros(P * P + P + 1), np.empty(P * P + P + 1)
    with np.errstate(invalid="ignore", over="ignore"):
        for a in range(0, n, block):
            b = min(n, a + block)
            J, r = rows(x, a, b)
            if js is not None:
                J *= js[a * m:b * m, None]
            if rs is not None:
                r *= rs[a * m:b * m]
            np.dot(J.T, J, out=part[:P * P].reshape(P, P))
            np.dot(J.T, r, out=part[P * P:P * P + P])
            part[-1] = r @ r
            neumaier(acc, err, part)
        return acc + err


def split(row: np.ndarray, P: int) -> tuple[np.ndarray, np.ndarray, float]:
    """``(JᵀJ, Jᵀr, rᵀr)`` from a row of :func:`normal_sums`."""
    return row[:P * P].reshape(P, P), row[P * P:P * P + P], float(row[-1])


def neumaier(acc: np.ndarray, err: np.ndarray, v: np.ndarray) -> None:
    """Add ``v`` into ``acc`` in place, its rounding error into ``err`` (Neumaier); quietly
    non-finite when ``v`` is (its caller's check names the datum)."""
    with np.errstate(invalid="ignore", over="ignore"):
        t = acc + v
        err += np.where(np.abs(acc) >= np.abs(v), (acc - t) + v, (v - t) + acc)
    acc[...] = t


def qr_sums(rows, n: int, P: int, m: int = 1, chunk: int = 4096, js=None,
            rs=None) -> np.ndarray:
    """``[T (flat), rᵀr]`` over samples ``0..n-1``: ``T`` the (P+1) x (P+1) upper-triangular
    factor of ``[J | r]``, accumulated from ``rows(lo, hi) -> (J rows, residuals)`` chunk by
    chunk (``[T; J_chunk r_chunk]`` re-factored: O((chunk + P) P) memory), the rows scaled by
    ``js``/``rs`` (one per residual, or None). Factors of disjoint row sets merge with
    :func:`qr_merge`."""
    top = np.zeros((0, P + 1))
    ftf = 0.0
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        J, f = rows(lo, hi)
        if js is not None:
            J = J * js[lo * m:hi * m, None]
        if rs is not None:
            f = f * rs[lo * m:hi * m]
        ftf += float(f @ f)
        top = np.linalg.qr(np.vstack([top, np.column_stack([J, f])]), mode="r")
    out = np.zeros((P + 1) * (P + 1) + 1)
    out[:top.size] = top.ravel()  # fewer rows than P + 1: the rest of the square is zero
    out[-1] = ftf
    return out


def qr_merge(parts, P: int) -> tuple[np.ndarray, np.ndarray, float]:
    """``(R, Qᵀr, rᵀr)`` of the rows behind the :func:`qr_sums` parts (in their order)."""
    parts = list(parts)
    tops = [p[:-1].reshape(P + 1, P + 1) for p in parts]
    top = tops[0] if len(tops) == 1 else np.linalg.qr(np.vstack(tops), mode="r")
    return top[:P, :P], top[:P, P].copy(), float(sum(p[-1] for p in parts))
