"""The squared gradient norm both training loops record and test ``gtol`` against.

One definition: the Python loop calls it, and the compiled loop calls it inside its jitted
loop, so the two record the same bits. Four interleaved partial sums (LLVM vectorizes them
without reordering a float sum: 24 us against 53 us for a sequential sum of 101,770 float32
entries), added as ``(s0 + s1) + (s2 + s3)``; float32 entries are widened one by one.

>>> import numpy as np
>>> sq_norm(np.array([3.0, 4.0]))
25.0
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["sq_norm"]


@numba.njit(cache=True, nogil=True, error_model="numpy")
def sq_norm(g: np.ndarray) -> float:
    """``sum(g**2)`` in float64 of a 1-D float64 or float32 array."""
    n = g.shape[0]
    m = n - n % 4
    s0 = s1 = s2 = s3 = 0.0
    for i in range(0, m, 4):
        a, b = np.float64(g[i]), np.float64(g[i + 1])
        c, d = np.float64(g[i + 2]), np.float64(g[i + 3])
        s0 += a * a
        s1 += b * b
        s2 += c * c
        s3 += d * d
    for i in range(m, n):
        a = np.float64(g[i])
        s0 += a * a
    return (s0 + s1) + (s2 + s3)
