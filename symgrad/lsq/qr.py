"""The two linear models of a Gauss–Newton step: normal equations, and a streamed QR factor.

Both answer the questions Moré's trust-region step asks, for the linearisation
``f(x + p) ~ f + J p`` with ``A = JᵀJ`` and ``g = Jᵀf``:

* ``gn_step()``: the Gauss–Newton step ``-A⁺g`` (minimum-norm when J is rank deficient);
* ``solve(lam, d)``: ``p = -(A + lam D²)⁻¹ g`` and ``v -> vᵀ(A + lam D²)⁻¹v`` (for phi');
* ``jp2(p)``: ``|J p|²``; ``restrict(free)``: the model in a subset of the parameters;
* ``spectrum()``: singular values / right vectors of the column-scaled J (rank, statistics).

:class:`NormalModel` works on ``(JᵀJ, Jᵀf)`` from one fused pass (forming JᵀJ squares the
condition number). :class:`QRModel` works on the P x P factor ``R`` and ``Qᵀf`` that
:func:`streamed_qr` accumulates from chunks of J rows, as MINPACK's ``lmstr`` does with Givens
rotations (here a blocked Householder QR of ``[R; J_chunk]``: the same factor, at BLAS speed).

>>> import numpy as np

from ..runtime.blocksums import qr_merge, qr_sums
>>> J = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]]); f = np.array([1.0, 2.0, 3.0])
>>> m = NormalModel(J.T @ J, J.T @ f)
>>> np.allclose(m.gn_step()[0], -np.linalg.lstsq(J, f, rcond=None)[0])
True
>>> R, qtf, _ = streamed_qr(lambda lo, hi: (J[lo:hi], f[lo:hi]), 3, 2, chunk=2)
>>> np.allclose(QRModel(R, qtf).gn_step()[0], m.gn_step()[0])
True
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..runtime.blocksums import qr_merge, qr_sums

__all__ = ["RANK_RTOL", "NormalModel", "QRModel", "streamed_qr"]

EPS = np.finfo(float).eps
#: Singular values of the column-scaled J below RANK_RTOL * P * s_max count as zero.
RANK_RTOL = 10 * EPS


def _colnorm(diag: np.ndarray) -> np.ndarray:
    c = np.sqrt(np.maximum(diag, 0.0))
    return np.where(c > 0, c, 1.0)


class _Model:
    """What both linear models share (each has ``spectrum()``)."""

    def ninv0(self, v: np.ndarray) -> float:
        """``(v/c)ᵀ (ĴᵀĴ)⁻¹ (v/c)`` with ``Ĵ = J/c`` (columns scaled), from the spectrum: the
        quantity behind lmpar's lower bound on the damping."""
        s, V, c = self.spectrum()
        y = V.T @ (v / c)
        return float(np.sum(y**2 / s**2))


class NormalModel(_Model):
    """The model from ``A = JᵀJ`` and ``g = Jᵀf`` (the fused pass; J never stored)."""

    def __init__(self, A: np.ndarray, g: np.ndarray) -> None:
        self.A = 0.5 * (A + A.T)
        self.g = g
        self.P = g.size
        self._spec = None

    @property
    def colnorm(self) -> np.ndarray:
        return np.sqrt(np.maximum(np.diag(self.A), 0.0))

    def spectrum(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(s, V, c)``: J/c = U diag(s) Vᵀ (s descending) with c the column norms of J."""
        if self._spec is None:
            c = _colnorm(np.diag(self.A))
            w, V = np.linalg.eigh(self.A / np.outer(c, c))
            s = np.sqrt(np.maximum(w[::-1], 0.0))
            self._spec = (s, V[:, ::-1], c)
        return self._spec

    def rank_cut(self) -> int:
        s, _, _ = self.spectrum()
        # eigenvalues of JᵀJ are s²: the cut is on s² (what the normal equations can resolve)
        return int(np.sum(s**2 > RANK_RTOL * self.P * s[0] ** 2)) if s[0] > 0 else 0

    def gn_step(self) -> tuple[np.ndarray, bool]:
        s, V, c = self.spectrum()
        k = self.rank_cut()
        y = V[:, :k].T @ (self.g / c)
        return -(V[:, :k] @ (y / s[:k] ** 2)) / c, k == self.P

    def solve(self, lam: float, d: np.ndarray) -> tuple[np.ndarray, Callable]:
        c = _colnorm(np.diag(self.A) + lam * d**2)
        C = (self.A + lam * np.diag(d**2)) / np.outer(c, c)
        try:
            L = np.linalg.cholesky(C)
        except np.linalg.LinAlgError:
            L = np.linalg.cholesky(C + np.eye(self.P) * (self.P * EPS))
        p = -np.linalg.solve(L.T, np.linalg.solve(L, self.g / c)) / c

        def ninv(v: np.ndarray) -> float:
            w = np.linalg.solve(L, v / c)
            return float(w @ w)

        return p, ninv

    def jp2(self, p: np.ndarray) -> float:
        return float(max(p @ self.A @ p, 0.0))

    def restrict(self, free: np.ndarray) -> NormalModel:
        return NormalModel(self.A[np.ix_(free, free)], self.g[free])


class QRModel(_Model):
    """The model from the triangular factor ``R`` (``RᵀR = JᵀJ``) and ``qtf = Qᵀf``."""

    def __init__(self, R: np.ndarray, qtf: np.ndarray) -> None:
        self.R, self.qtf = R, qtf
        self.P = qtf.size
        self.g = R.T @ qtf
        self._spec = None

    @property
    def colnorm(self) -> np.ndarray:
        return np.linalg.norm(self.R, axis=0)

    def spectrum(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._spec is None:
            c = _colnorm(self.colnorm**2)
            U, s, Vt = np.linalg.svd(self.R / c)
            self._spec = (s, Vt.T, c, U)
        return self._spec[:3]

    def rank_cut(self) -> int:
        s, _, _ = self.spectrum()
        return int(np.sum(s > RANK_RTOL * self.P * s[0])) if s[0] > 0 else 0

    def gn_step(self) -> tuple[np.ndarray, bool]:
        s, V, c = self.spectrum()
        U = self._spec[3]
        k = self.rank_cut()
        y = U[:, :k].T @ self.qtf
        return -(V[:, :k] @ (y / s[:k])) / c, k == self.P

    def solve(self, lam: float, d: np.ndarray) -> tuple[np.ndarray, Callable]:
        # in the column-scaled variables q = c * p, so that the guard on tiny pivots does not
        # depend on the parameters' units
        c = _colnorm(self.colnorm**2)
        Q, Rl = np.linalg.qr(np.vstack([self.R / c, np.sqrt(lam) * np.diag(d / c)]))
        diag = np.abs(np.diag(Rl))
        if diag.min() <= EPS * max(diag.max(), EPS):
            Rl = Rl + np.diag(np.where(diag <= EPS * diag.max(), EPS * diag.max(), 0.0))
        p = -np.linalg.solve(Rl, Q[:self.P].T @ self.qtf) / c

        def ninv(v: np.ndarray) -> float:
            w = np.linalg.solve(Rl.T, v / c)
            return float(w @ w)

        return p, ninv

    def jp2(self, p: np.ndarray) -> float:
        w = self.R @ p
        return float(w @ w)

    def restrict(self, free: np.ndarray) -> QRModel:
        Q, R = np.linalg.qr(self.R[:, free])
        return QRModel(R, Q.T @ self.qtf)


def streamed_qr(rows: Callable[[int, int], tuple[np.ndarray, np.ndarray]], n_samples: int,
                n_params: int, m: int = 1, chunk: int = 4096,
                jscale: np.ndarray | None = None, rscale: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray, float]:
    """``(R, Qᵀf, fᵀf)`` of the rows ``rows(lo, hi) -> (J_rows, f_rows)``, chunk by chunk.

    Memory is O((chunk + P) * P): J is never stored whole. ``jscale``/``rscale`` scale the
    residuals ``lo*m .. hi*m-1`` (robust losses, weights), as the fused normal pass does
    (:func:`symgrad.runtime.blocksums.qr_sums`; a kernel on Dask chunks runs it per chunk).
    """
    return qr_merge([qr_sums(rows, n_samples, n_params, m, chunk, jscale, rscale)], n_params)
