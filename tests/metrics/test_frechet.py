"""Fréchet distance against closed forms."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from musicgen_nb import metrics as M

RNG = np.random.default_rng(0)


def with_moments(n, mean, cov, seed):
    """n samples whose sample mean and (N - 1) covariance are exactly ``mean`` and ``cov``."""
    d = len(mean)
    z = np.random.default_rng(seed).normal(size=(n, d))
    z -= z.mean(0)
    z = z @ np.linalg.inv(np.linalg.cholesky(np.atleast_2d(np.cov(z, rowvar=False)))).T  # cov = I
    return z @ np.linalg.cholesky(cov).T + mean


def closed_form(m1, s1, m2, s2):
    """The textbook formula with scipy's general sqrtm."""
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((m1 - m2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def random_cov(d, seed):
    a = np.random.default_rng(seed).normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def test_fad_of_a_set_with_itself_is_zero():
    x = RNG.normal(size=(300, 16)) * 3 + 5
    assert M.frechet_distance(x, x) == pytest.approx(0.0, abs=1e-9)
    assert M.frechet_distance(x, x.copy()) == M.frechet_distance(x, x)


@pytest.mark.parametrize("d", [1, 4, 32])
def test_fad_of_two_gaussians_matches_the_closed_form(d):
    m1, m2 = RNG.normal(size=d), RNG.normal(size=d) + 1
    s1, s2 = random_cov(d, 1), random_cov(d, 2)
    x, y = with_moments(200, m1, s1, 3), with_moments(150, m2, s2, 4)
    got = M.frechet_distance(x, y)
    assert got == pytest.approx(closed_form(m1, s1, m2, s2), rel=1e-8)
    assert got == pytest.approx(M.gaussian_frechet(m1, s1, m2, s2), rel=1e-9)
    assert M.frechet_distance(y, x) == pytest.approx(got, rel=1e-9)  # symmetric


def test_one_dimensional_closed_form():
    # (m1 - m2)^2 + (s1 - s2)^2 for standard deviations s1, s2
    assert M.gaussian_frechet([0.0], [[9.0]], [2.0], [[1.0]]) == pytest.approx(4 + (3 - 1) ** 2)


def test_sqrtm_stays_real_on_near_singular_covariances():
    # rank-deficient covariances: a general sqrtm of S1 @ S2 picks up imaginary noise
    a = RNG.normal(size=(64, 3))
    s1 = a @ a.T
    s2 = s1 + 1e-12 * np.eye(64)
    d = M.gaussian_frechet(np.zeros(64), s1, np.zeros(64), s2)
    assert np.isfinite(d) and 0.0 <= d < 1e-6


def test_fad_refuses_too_few_samples():
    x, y = RNG.normal(size=(10, 16)), RNG.normal(size=(40, 16))
    with pytest.raises(ValueError, match="x has N=10 embeddings of dimension D=16"):
        M.frechet_distance(x, y)
    assert M.frechet_distance(x, y, allow_singular=True) > 0
    with pytest.raises(ValueError, match="covariance needs N >= 2"):
        M.frechet_distance(x[:1], y, allow_singular=True)


@pytest.mark.parametrize(
    "x, y, match",
    [
        (np.zeros((5, 2, 2)), np.zeros((5, 2)), r"x must be embeddings \[N, D\]"),
        (np.zeros((5, 2)), np.zeros((5, 3)), "same dimension, got 2 and 3"),
        (np.full((5, 2), np.nan), np.zeros((5, 2)), "x holds NaN or inf"),
    ],
)
def test_fad_bad_input(x, y, match):
    with pytest.raises(ValueError, match=match):
        M.frechet_distance(x, y, allow_singular=True)


@pytest.mark.parametrize(
    "x, exc, match",
    [
        (RNG.normal(size=(50, 3)) * 1e200, ValueError, "x: its covariance overflows float64"),
        (RNG.normal(size=(50, 3)).astype(str), TypeError, "x must hold real numbers, got dtype <U"),
        ([[1.0, 2.0, 3.0], [1.0, 2.0]], ValueError, "x is ragged"),
        (RNG.normal(size=(50, 3)) + 1j, TypeError, "x is complex"),
        ([["a", 1.0, 2.0], [1, 2, 3]], TypeError, "x must hold real numbers"),
    ],
)
def test_fad_refuses_inputs_it_cannot_measure_by_name(x, exc, match):
    with pytest.raises(exc, match=match):
        M.frechet_distance(x, RNG.normal(size=(50, 3)))
    with pytest.raises(exc, match=match.replace("x", "y", 1)):
        M.frechet_distance(RNG.normal(size=(50, 3)), x)


@pytest.mark.parametrize("flag", ["yes", 1, None])
def test_allow_singular_must_be_a_bool(flag):
    with pytest.raises(TypeError, match=f"allow_singular must be True or False, got {flag!r}"):
        M.frechet_distance(RNG.normal(size=(50, 3)), RNG.normal(size=(50, 3)), allow_singular=flag)


@pytest.mark.parametrize(
    "sigma1, match",
    [
        (np.array([[np.nan]]), "sigma1 holds NaN or inf"),
        (np.array([[-1.0]]), "sigma1 has a negative eigenvalue"),
        (np.array([[1.0, 2.0], [0.0, 1.0]]), "sigma1 is not symmetric"),
        (np.array([[1.0, 2.0], [2.0, 1.0]]), "sigma1 has a negative eigenvalue"),
    ],
)
def test_gaussian_frechet_refuses_a_bad_covariance(sigma1, match):
    d = sigma1.shape[0]
    with pytest.raises(ValueError, match=match):
        M.gaussian_frechet(np.zeros(d), sigma1, np.zeros(d), np.eye(d))
    with pytest.raises(ValueError, match="mu2 holds NaN"):
        M.gaussian_frechet(np.zeros(1), np.eye(1), [np.nan], np.eye(1))


def test_gaussian_frechet_refuses_a_result_that_overflows():
    with pytest.raises(
        ValueError, match=r"the Fréchet distance overflows float64 .* up to 1e\+200"
    ):
        M.gaussian_frechet(np.full(2, 1e200), np.eye(2), np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match="the Fréchet distance overflows float64"):
        M.gaussian_frechet(np.zeros(2), np.eye(2) * 1e200, np.zeros(2), np.eye(2) * 1e200)
