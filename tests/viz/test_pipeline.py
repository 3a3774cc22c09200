import pytest

from musicgen_nb import viz
from musicgen_nb.viz.pipeline import BOXES, FILL_ON


def _titles(fig):
    return [a.text.split("<br>")[0] for a in fig.layout.annotations if a.text.startswith("<b>")]


def test_pipeline_boxes_in_order_and_highlight(tiny):
    fig = viz.pipeline(tiny, highlight=["t5", "codes"])
    assert _titles(fig) == [f"<b>{t}</b>" for _, t, _, _ in BOXES]
    on = [i for i, sh in enumerate(fig.layout.shapes) if sh.fillcolor == FILL_ON]
    assert on == [1, 4]
    text = " ".join(a.text for a in fig.layout.annotations)
    cfg = tiny.model.config
    assert f"{cfg.text_encoder.d_model} -&gt; {cfg.decoder.hidden_size}" in text  # sizes, escaped
    assert f"{cfg.decoder.num_hidden_layers} layers" in text
    assert "cross-attn to text" in text and "prefix" not in text


def test_pipeline_melody_row_is_a_prefix(tiny_melody):
    fig = viz.pipeline(tiny_melody, highlight="chroma")
    text = " ".join(a.text for a in fig.layout.annotations)
    assert (
        "<b>chroma</b>" in text
        and "prepended" in fig.layout.title.text
        and "cross-attn to text" not in text
    )
    assert len(fig.layout.shapes) == len(BOXES) + 3
    assert viz.pipeline(highlight="chroma").layout.height == fig.layout.height


def test_pipeline_bad_highlight():
    with pytest.raises(ValueError, match="highlight must name boxes in .* got 'T5'"):
        viz.pipeline(highlight="T5")


def test_pipeline_refuses_a_name_in_place_of_a_model():
    with pytest.raises(ValueError, match=r"s must be a loaded model .*'bogus'.*highlight=.*'t5'"):
        viz.pipeline("bogus")


def test_pipeline_of_a_standin_draws_the_real_sizes_labelled(monkeypatch):
    import musicgen_nb as mg

    monkeypatch.setenv("MUSICGEN_NB_STANDIN", "1")
    s = mg.load("facebook/musicgen-small")
    assert s.is_standin
    fig = viz.pipeline(s)
    text = " ".join(a.text for a in fig.layout.annotations)
    # facebook/musicgen-small: 24 decoder layers of width 1024, T5-base (768) from the stored spec
    assert "24 layers x 1024 (spec)" in text and "768 -&gt; 1024 (spec)" in text
    assert f"{s.model.config.decoder.num_hidden_layers} layers" not in text
    assert f"loaded: the offline stand-in '{s.standin}', random weights" in fig.layout.title.text
    assert "facebook/musicgen-small" in fig.layout.title.text


def test_pipeline_two_rows_of_at_most_four_boxes(tiny):
    fig = viz.pipeline(tiny)
    xs = sorted({round(sh.x0, 3) for sh in fig.layout.shapes})
    ys = sorted({round(sh.y0, 3) for sh in fig.layout.shapes})
    assert len(xs) == 4 and len(ys) == 2
