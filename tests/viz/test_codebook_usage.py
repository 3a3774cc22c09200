import numpy as np
import pytest

import musicgen_nb as mg
from musicgen_nb import viz


def test_codebook_usage_from_codes_matches_tokens():
    codes = np.array([[0, 1, 2, 3], [5, 5, 5, 5]])
    fig = viz.codebook_usage(codes, codebook_size=8)
    df = mg.tokens.codebook_usage(codes, codebook_size=8)
    ent, uniq = fig.data
    assert list(ent.x) == ["cb 0", "cb 1"] and list(uniq.x) == ["cb 0", "cb 1"]
    np.testing.assert_allclose(np.asarray(ent.y), df.entropy_bits)
    np.testing.assert_array_equal(np.asarray(uniq.y), df.unique_codes)
    assert [a.text for a in fig.layout.annotations][:2] == ["entropy (bits)", "unique codes"]
    assert ent.xaxis == "x" and uniq.xaxis == "x2"
    assert "max 3.00 bits" in [a.text for a in fig.layout.annotations]
    assert fig.layout.yaxis.title.text == "bits"
    assert list(ent.customdata)[1] == "top codes: 5 (x4)"
    assert "%{customdata}" in ent.hovertemplate
    # a short title, the sizes on a subtitle line (one line sat on the panel titles at 700 px)
    assert (
        fig.layout.title.text
        == "Codebook usage<br><sup>codebook size 8, 4 tokens per codebook</sup>"
    )


def test_codebook_usage_from_dataframe_and_batch_pooling():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 2048, size=(2, 4, 300))
    pooled = viz.codebook_usage(codes)
    df = mg.tokens.codebook_usage(codes)
    np.testing.assert_array_equal(np.asarray(pooled.data[1].y), df.unique_codes)
    from_df = viz.codebook_usage(df)
    np.testing.assert_allclose(np.asarray(from_df.data[0].y), np.asarray(pooled.data[0].y))
    one = viz.codebook_usage(codes, item=1)
    df1 = mg.tokens.codebook_usage(codes[1])
    np.testing.assert_array_equal(np.asarray(one.data[1].y), df1.unique_codes)
    assert pooled.to_json() == viz.codebook_usage(codes).to_json()


def test_codebook_usage_errors():
    import pandas as pd

    with pytest.raises(ValueError, match=r"allowed: 0\.\.7 \(codebook_size=8\)"):
        viz.codebook_usage(np.array([[0, 9]]), codebook_size=8)
    with pytest.raises(ValueError, match=r"without column\(s\) \['entropy_bits', 'unique_codes'\]"):
        viz.codebook_usage(pd.DataFrame({"codebook": [0]}))
    with pytest.raises(ValueError, match="shape"):
        viz.codebook_usage(np.zeros(5, dtype=int))
    with pytest.raises(ValueError, match=r"codebook_size must be an int in \[1, 65536\]"):
        viz.codebook_usage(np.zeros((2, 2), dtype=int), codebook_size=0)


def test_codebook_usage_from_generation(tiny):
    g = tiny.generate("x", duration=1, seed=0, progress=False)
    fig = viz.codebook_usage(g, codebook_size=tiny.model.config.decoder.vocab_size)
    assert len(fig.data[0].x) == tiny.num_codebooks


def test_codebook_usage_refuses_a_huge_codebook_size_up_front():
    codes = np.zeros((4, 10), dtype=np.int64)
    with pytest.raises(ValueError, match=r"codebook_size must be .*65536"):
        viz.codebook_usage(codes, codebook_size=10**12)
