"""Fréchet distance between two sets of embeddings (Fréchet Audio Distance for audio embeddings).

The matrix square root is symmetric and eigenvalue-based, so it stays real and
stable where ``scipy.linalg.sqrtm(S1 @ S2)`` can return complex noise.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import ArrayLike


def _sqrt_psd(m: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix (negative rounding clipped)."""
    w, v = np.linalg.eigh((m + m.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def gaussian_frechet(mu1: ArrayLike, sigma1: ArrayLike, mu2: ArrayLike, sigma2: ArrayLike) -> float:
    """Fréchet distance between two Gaussians ``N(mu1, sigma1)`` and ``N(mu2, sigma2)``.

    ``|mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1^1/2 S2 S1^1/2)^1/2)``: the trace
    term equals ``tr((S1 S2)^1/2)`` but takes square roots of symmetric matrices
    only (eigendecompositions in float64), which stays real and stable where
    ``scipy.linalg.sqrtm(S1 @ S2)`` can return complex noise.

    Examples
    --------
    >>> import numpy as np
    >>> gaussian_frechet(np.zeros(1), np.eye(1) * 4, np.ones(1), np.eye(1))  # 1 + (2 - 1)^2
    2.0
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = (
        np.atleast_2d(np.asarray(sigma1, np.float64)),
        np.atleast_2d(np.asarray(sigma2, np.float64)),
    )
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise ValueError(
            f"mu1/mu2 must be [D] and sigma1/sigma2 [D, D]; got {mu1.shape}, {mu2.shape}, {s1.shape}, {s2.shape}"
        )
    r1 = _sqrt_psd(s1)
    inner = r1 @ s2 @ r1
    trace_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((inner + inner.T) / 2), 0, None)).sum()
    d = float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * trace_sqrt)
    return max(d, 0.0)


def _embeddings(x, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be embeddings [N, D], got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} holds NaN or inf")
    if arr.shape[0] < 2:
        raise ValueError(f"{name} has {arr.shape[0]} embedding(s); a covariance needs N >= 2")
    return arr


def frechet_distance(x: ArrayLike, y: ArrayLike, *, allow_singular: bool = False) -> float:
    """Fréchet distance between two sets of embeddings (FAD for audio embeddings).

    Fits a Gaussian to each set (mean, covariance with N - 1) and returns
    :func:`gaussian_frechet` of the two.

    Parameters
    ----------
    x, y : array_like
        Embeddings ``[N, D]`` and ``[M, D]``.
    allow_singular : bool
        With N <= D the covariance is singular (rank N - 1 < D) and the
        distance is biased and noisy; this raises unless you allow it.
        Published FAD uses thousands of clips.

    Returns
    -------
    float
        >= 0; 0 for a set against itself.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(200, 4))
    >>> round(frechet_distance(x, x), 9), frechet_distance(x, x + 1) > 3.9
    (0.0, True)
    """
    a, b = _embeddings(x, "x"), _embeddings(y, "y")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"x and y must have the same dimension, got {a.shape[1]} and {b.shape[1]}")
    dim = a.shape[1]
    for name, arr in (("x", a), ("y", b)):
        if arr.shape[0] <= dim and not allow_singular:
            raise ValueError(
                f"{name} has N={arr.shape[0]} embeddings of dimension D={dim}: with N <= D the covariance "
                f"is singular and the distance unreliable. Use more than {dim} clips, fewer dimensions "
                "(e.g. PCA, or embed(..., model='encodec', pool='frames')), or pass allow_singular=True"
            )
    cov = functools.partial(np.cov, rowvar=False)
    return gaussian_frechet(a.mean(0), cov(a), b.mean(0), cov(b))
