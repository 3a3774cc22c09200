"""KL of the tagger's label distributions, with the AST stand-in on a tiny random config."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import torch
from _clips import clips

import musicgen_nb as mg
from musicgen_nb import metrics as M
from musicgen_nb.metrics.kl import load_ast

RNG = np.random.default_rng(0)


def test_kl_of_identical_distributions_is_zero():
    p = RNG.dirichlet(np.ones(10), size=4)
    np.testing.assert_array_equal(M.kl(p, p), np.zeros(4))
    x = clips(3)
    np.testing.assert_array_equal(M.kl_divergence(x, x, 32000, classifier="tiny-ast"), 0.0)


def test_kl_divergence_is_kl_of_the_tagger_distributions():
    gen, ref = clips(3, seed=1), clips(3, seed=2)
    p = M.label_distribution(ref, 32000, classifier="tiny-ast")
    q = M.label_distribution(gen, 32000, classifier="tiny-ast")
    assert p.shape == (3, 10)
    np.testing.assert_allclose(p.sum(-1), 1.0)
    got = M.kl_divergence(gen, ref, 32000, classifier="tiny-ast")
    np.testing.assert_allclose(got, scipy.stats.entropy(p, q, axis=-1), rtol=1e-6)
    assert (got > 0).all()
    # a reference at another sample rate
    ref16 = mg.audio.resample(ref, 32000, 16000)
    np.testing.assert_allclose(
        M.kl_divergence(gen, ref16, 32000, ref_sr=16000, classifier="tiny-ast"), got, rtol=1e-3
    )


def test_ast_loads_from_a_directory(tmp_path):
    model, fe = load_ast("tiny-ast")
    model.save_pretrained(tmp_path)
    fe.save_pretrained(tmp_path)
    x = clips(2)
    np.testing.assert_allclose(
        M.label_distribution(x, 32000, classifier=str(tmp_path)),
        M.label_distribution(x, 32000, classifier="tiny-ast"),
        atol=1e-7,
    )


def test_kl_shape_errors():
    with pytest.raises(ValueError, match="same shape"):
        M.kl(np.ones(3) / 3, np.ones(4) / 4)
    with pytest.raises(ValueError, match="same number of clips, got 2 and 3"):
        M.kl_divergence(clips(2), clips(3), 32000, classifier="tiny-ast")


@pytest.mark.parametrize(
    "p, match",
    [
        ([0.5, -0.5, 1.0], r"p holds negative values \(-0\.5\); probabilities are >= 0"),
        ([0.5, np.nan, 0.5], "p holds NaN or inf"),
        ([0.5, np.inf, 0.5], "p holds NaN or inf"),
        ([0.0, 0.0, 0.0], "p has a distribution that is all zeros"),
        ([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]], "p has a distribution that is all zeros"),
        (np.zeros((2, 0)), r"p is empty \(shape \(2, 0\)\)"),
        ([], r"p is empty"),
        (["a", "b", "c"], "p must be real numbers"),
        ([1 + 1j, 0, 0], "p must be real numbers"),
        ([1e308, 1e308], r"p holds values whose sum overflows float64 \(up to 1e\+308\)"),
    ],
)
def test_kl_refuses_what_is_not_a_distribution_by_name(p, match):
    q = (
        np.ones(np.shape(p)) / max(np.shape(p)[-1] if np.ndim(p) else 1, 1)
        if np.size(p)
        else np.zeros(np.shape(p))
    )
    with pytest.raises((ValueError, TypeError), match=match):
        M.kl(p, q)
    with pytest.raises((ValueError, TypeError), match=match.replace("p ", "q ", 1)):
        M.kl(q if np.size(p) else [1.0], p)


@pytest.mark.parametrize("eps, exc", [(-1, ValueError), (0, ValueError), (1.0, ValueError),
                                      (float("nan"), ValueError), ("1e-12", TypeError),
                                      ("x", TypeError), (True, TypeError)])  # fmt: skip
def test_kl_eps_must_be_a_small_positive_float(eps, exc):
    with pytest.raises(exc, match=r"eps must be a float in \(0, 1\)"):
        M.kl([0.5, 0.5], [0.5, 0.5], eps=eps)


def test_kl_divergence_refuses_nan_audio():
    bad = clips(1).copy()
    bad[..., 10] = np.nan
    with pytest.raises(ValueError, match="^gen: audio holds non-finite values: 1 NaN"):
        M.kl_divergence(bad, clips(1), 32000, classifier="tiny-ast")
    with pytest.raises(ValueError, match="^ref: audio holds non-finite values: 1 NaN"):
        M.kl_divergence(clips(1), bad, 32000, classifier="tiny-ast")


def test_the_tagger_runs_on_the_device_asked_for():
    model, _ = load_ast("tiny-ast", "meta")  # a device with no data: where the weights are put
    assert {p.device.type for p in model.parameters()} == {"meta"}
    assert load_ast("tiny-ast", None)[0] is load_ast("tiny-ast", torch.device("cpu"))[0]
    assert next(load_ast("tiny-ast")[0].parameters()).device.type == "cpu"
    with pytest.raises(NotImplementedError, match="copy out of meta"):
        M.label_distribution(clips(1), 32000, classifier="tiny-ast", device="meta")  # ran there
    p = M.label_distribution(clips(1), 32000, classifier="tiny-ast", device="cpu")
    np.testing.assert_array_equal(p, M.label_distribution(clips(1), 32000, classifier="tiny-ast"))
    with pytest.raises(TypeError, match="device must be None, a string or a torch.device"):
        M.label_distribution(clips(1), 32000, classifier="tiny-ast", device=3)


# --------------------------------------------------------------------------- the public helpers
def test_load_ast_is_cached_and_seeded():
    model, fe = load_ast("tiny-ast")
    assert load_ast("tiny-ast")[0] is model and model.config.num_labels == 10
    load_ast.cache_clear()
    try:
        again, _ = load_ast("tiny-ast")
        for a, b in zip(model.parameters(), again.parameters(), strict=True):
            assert torch.equal(a, b)  # built from a fixed seed
    finally:
        load_ast.cache_clear()


def test_label_distribution_checks_the_classifier():
    with pytest.raises(
        TypeError, match="classifier must be 'ast' or an AST checkpoint name, got 3"
    ):
        M.label_distribution(clips(1), 32000, classifier=3)


def test_only_input_errors_name_gen_or_ref():
    with pytest.raises(TypeError, match="^ref: sr must be"):
        M.kl_divergence(clips(1), clips(1), "32000", classifier="tiny-ast")
    with pytest.raises(NotImplementedError, match="^Cannot copy out of meta"):  # the tagger's own
        M.kl_divergence(clips(1), clips(1), 32000, classifier="tiny-ast", device="meta")
