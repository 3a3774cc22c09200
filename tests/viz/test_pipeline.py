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
    assert "<b>chroma</b>" in text and "prepended" in text and "cross-attn to text" not in text
    assert len(fig.layout.shapes) == len(BOXES) + 3
    assert viz.pipeline(highlight="chroma").layout.height == fig.layout.height


def test_pipeline_bad_highlight():
    with pytest.raises(ValueError, match="highlight must name boxes in .* got 'T5'"):
        viz.pipeline(highlight="T5")
