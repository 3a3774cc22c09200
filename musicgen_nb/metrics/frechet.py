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
    mu1, mu2 = _real(mu1, "mu1"), _real(mu2, "mu2")
    s1, s2 = np.atleast_2d(_real(sigma1, "sigma1")), np.atleast_2d(_real(sigma2, "sigma2"))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise ValueError(
            f"mu1/mu2 must be [D] and sigma1/sigma2 [D, D]; got {mu1.shape}, {mu2.shape}, {s1.shape}, {s2.shape}"
        )
    for name, s in (("sigma1", s1), ("sigma2", s2)):
        _check_cov(s, name)
    with np.errstate(over="ignore", invalid="ignore"):
        r1 = _sqrt_psd(s1)
        inner = r1 @ s2 @ r1
        mean_term = ((mu1 - mu2) ** 2).sum()
    if not (np.isfinite(inner).all() and np.isfinite(mean_term)):
        big = max(np.abs(a).max() for a in (mu1, mu2, s1, s2))
        raise ValueError(
            f"the Fréchet distance overflows float64 (mu1/mu2/sigma1/sigma2 hold values up to "
            f"{big:.3g}); scale the embeddings down"
        )
    trace_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((inner + inner.T) / 2), 0, None)).sum()
    d = float(mean_term + np.trace(s1) + np.trace(s2) - 2 * trace_sqrt)
    if not np.isfinite(d):
        raise ValueError("the Fréchet distance overflows float64; scale the embeddings down")
    return max(d, 0.0)


def _real(x, name: str) -> np.ndarray:
    """``x`` as a float64 array of real numbers; strings, complex, ragged or NaN/inf raise naming it."""
    try:
        arr = np.asarray(x)
    except ValueError:  # ragged nesting
        raise ValueError(f"{name} is ragged: its rows must all have the same length") from None
    if arr.dtype == object:
        raise ValueError(f"{name} is ragged or holds non-numbers; give a numeric array")
    if arr.dtype.kind == "c":
        raise TypeError(f"{name} is complex; the Fréchet distance needs real numbers")
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} holds NaN or inf")
    return arr


def _check_cov(s: np.ndarray, name: str) -> None:
    """A covariance must be symmetric positive semi-definite (up to rounding)."""
    scale = max(float(np.abs(s).max()), 1e-300)
    if not np.allclose(s, s.T, rtol=1e-6, atol=1e-9 * scale):
        raise ValueError(f"{name} is not symmetric; a covariance matrix is")
    low = float(np.linalg.eigvalsh((s + s.T) / 2).min())
    if low < -1e-6 * scale:
        raise ValueError(
            f"{name} has a negative eigenvalue ({low:g}); a covariance is positive semi-definite"
        )


def _embeddings(x, name: str) -> np.ndarray:
    arr = _real(x, name)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be embeddings [N, D], got shape {arr.shape}")
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
    if not isinstance(allow_singular, bool):
        raise TypeError(f"allow_singular must be True or False, got {allow_singular!r}")
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
    with np.errstate(over="ignore", invalid="ignore"):
        stats = [(name, arr.mean(0), cov(arr)) for name, arr in (("x", a), ("y", b))]
    for name, mu, sigma in stats:
        if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
            raise ValueError(
                f"{name}: its covariance overflows float64 (values up to {np.abs(a if name == 'x' else b).max():.3g}); "
                "scale the embeddings down (e.g. divide by their norm)"
            )
    return gaussian_frechet(stats[0][1], stats[0][2], stats[1][1], stats[1][2])
