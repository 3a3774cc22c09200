import base64
import io
import re

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from musicgen_nb.players import Gallery, Player, gallery, player, render_generation

SR = 32000


def _sine(seconds, sr=SR, f=440.0, channels=None):
    y = (0.5 * np.sin(2 * np.pi * f * np.arange(int(seconds * sr)) / sr)).astype(np.float32)
    return y if channels is None else np.stack([y] * channels)


def _noise(seconds, sr=SR, seed=0):
    return (0.3 * np.random.default_rng(seed).standard_normal(int(seconds * sr))).astype(np.float32)


def _decode(uri):
    head, b64 = uri.split(",", 1)
    data, sr = sf.read(io.BytesIO(base64.b64decode(b64)), always_2d=True)
    return head, data, sr


def test_player_embeds_decodable_ogg():
    y = _sine(2.0)
    p = player(y, SR, label="a tone")
    assert isinstance(p, Player) and p.fmt == "ogg"
    head, data, sr = _decode(p.data_uri)
    assert head == "data:audio/ogg;base64"
    assert sr == SR and data.shape == (2 * SR, 1)
    assert np.corrcoef(data[:, 0], y)[0, 1] > 0.99  # it is the same sound
    assert p.nbytes == len(base64.b64decode(p.data_uri.split(",", 1)[1]))
    html = p._repr_html_()
    assert html.count("<audio controls") == 1 and f'src="{p.data_uri}"' in html
    assert "a tone" in html and "2 s, mono, 32000 Hz" in html


def test_player_stereo_and_batch_item():
    audio = np.stack([_sine(1.0, channels=2), 0.5 * _sine(1.0, channels=2)])
    p = player(audio, SR, item=1)
    _, data, sr = _decode(p.data_uri)
    assert data.shape == (SR, 2) and p.channels == 2
    assert np.abs(data).max() == pytest.approx(0.25, abs=0.02)
    assert "stereo" in p._repr_html_()
    with pytest.raises(ValueError, match=r"batch of 2 items.*pass item=0\.\.1"):
        player(audio, SR)
    with pytest.raises(ValueError, match=r"item=2 is out of range"):
        player(audio, SR, item=2)


def test_player_caps_to_max_seconds():
    y = _sine(45.0, sr=8000)
    p = player(y, 8000)
    _, data, sr = _decode(p.data_uri)
    assert p.capped and p.seconds == 30.0 and p.duration == 45.0
    assert data.shape[0] == 30 * 8000 and sr == 8000
    assert "first 30 s of 45 s" in p._repr_html_()
    full = player(y, 8000, max_seconds=None)
    assert not full.capped and _decode(full.data_uri)[1].shape[0] == 45 * 8000
    assert "first" not in full._repr_html_()
    short = player(y, 8000, max_seconds=2.5)
    assert "first 2.5 s of 45 s" in short._repr_html_()


def test_player_wav_format():
    y = _sine(1.0)
    p = player(y, SR, fmt="wav")
    head, data, sr = _decode(p.data_uri)
    assert p.fmt == "wav" and head == "data:audio/wav;base64" and sr == SR
    np.testing.assert_allclose(data[:, 0], y, atol=1 / 32767 + 1e-6)


def test_player_escapes_label_and_meta():
    p = player(
        _sine(0.1),
        SR,
        label='<script>alert("x")</script> & co',
        meta={"seed": 7, "<k>": "a<b", "gs": 3.0},
    )
    html = p._repr_html_()
    assert "<script>" not in html and "&lt;script&gt;" in html and "&amp; co" in html
    assert "<th" in html and "&lt;k&gt;" in html and "a&lt;b" in html
    assert re.search(r"<th[^>]*>seed</th><td[^>]*>7</td>", html)
    assert re.search(r"<th[^>]*>gs</th><td[^>]*>3</td>", html)


def test_player_html_is_deterministic():
    y = _noise(1.0)
    a, b = player(y, SR, label="n")._repr_html_(), player(y, SR, label="n")._repr_html_()
    assert a == b
    assert not re.search(r"[0-9a-f]{8}-[0-9a-f]{4}-", a)  # no uuids


def test_player_errors():
    with pytest.raises(TypeError, match="sr is required"):
        player(_sine(0.1))
    with pytest.raises(ValueError, match="sr must be a positive integer sample rate in Hz, got 0"):
        player(_sine(0.1), 0)
    with pytest.raises(ValueError, match=r"fmt must be one of \['ogg', 'wav'\], got 'mp3'"):
        player(_sine(0.1), SR, fmt="mp3")
    with pytest.raises(ValueError, match="max_seconds must be a positive number or None, got 0"):
        player(_sine(0.1), SR, max_seconds=0)
    with pytest.raises(ValueError, match=r"Did you pass \[samples, channels\]"):
        player(np.zeros((3200, 2)), SR)
    with pytest.raises(TypeError, match="meta must be a dict"):
        player(_sine(0.1), SR, meta=[1])
    with pytest.raises(ValueError, match="at least one channel and one sample"):
        player(np.zeros(0), SR)


def test_gallery_grid_table_and_escaping():
    items = [(_sine(0.5, f=220 * (i + 1)), SR, f"clip <{i}>") for i in range(4)]
    table = pd.DataFrame({"prompt": ["<b>bold</b>", "x", "y", "z"], "gs": [1, 2, 3, 4]})
    g = gallery(items, table=table, columns=2)
    assert isinstance(g, Gallery) and len(g) == 4
    html = g._repr_html_()
    assert html.count("<audio") == 4
    assert "grid-template-columns:repeat(2," in html
    assert (
        "clip &lt;0&gt;" in html and "<b>bold</b>" not in html and "&lt;b&gt;bold&lt;/b&gt;" in html
    )
    assert "<table" in html and html.index("<table") > html.rindex("<audio")
    assert g._repr_html_() == gallery(items, table=table, columns=2)._repr_html_()


def test_gallery_item_kinds_and_errors():
    p = player(_sine(0.2), SR, label="ready")
    g = gallery([p, (_sine(0.2), SR), (_sine(0.2), SR, "with meta", {"seed": 3})])
    assert len(g) == 3 and g[0] is p and g[1].label is None and g[2].meta == {"seed": 3}
    with pytest.raises(TypeError, match=r"items\[0\] must be a Generation.*got str"):
        gallery(["nope"])
    with pytest.raises(TypeError, match=r"items\[0\].*tuple of length 1"):
        gallery([(np.zeros(3),)])
    with pytest.raises(ValueError, match="columns must be an int >= 1, got 0"):
        gallery([p], columns=0)
    with pytest.raises(TypeError, match="table must be a pandas.DataFrame"):
        gallery([p], table={"a": 1})


def test_gallery_size_ten_10s_clips():
    clips = [(_noise(10.0, seed=i) if i % 2 else _sine(10.0, f=220 + 55 * i)) for i in range(10)]
    html = gallery([(c, SR, f"clip {i}") for i, c in enumerate(clips)])._repr_html_()
    wav_b64 = 10 * (10 * SR * 2) * 4 // 3
    assert len(html) < 1_300_000  # an embedded 30 s WAV alone is ~2.6 MB
    assert len(html) < wav_b64 / 5
    noise = gallery([(_noise(10.0, seed=i), SR, "n") for i in range(10)])._repr_html_()
    assert len(noise) < 2_000_000


def test_generation_players_and_repr(tiny):
    g = tiny.generate(["lo-fi <beat>", None], duration=1, seed=5, progress=False)
    gal = gallery([g])
    assert len(gal) == 2
    assert gal[0].label == "lo-fi <beat>" and gal[1].label == "(unconditional)"
    assert gal[0].meta["seed"] == 5 and gal[1].meta["item"] == 1
    _, data, sr = _decode(gal[1].data_uri)
    assert sr == g.sample_rate and data.shape[0] == g.audio.shape[-1]
    html = g._repr_html_()
    assert html.count("<audio") == 2 and "lo-fi &lt;beat&gt;" in html and ">seed<" in html
    p = player(g, item=1)
    assert p.sample_rate == g.sample_rate and p.label == "(unconditional)"
    with pytest.raises(ValueError, match="pass item=0..1"):
        player(g)


def test_render_generation_is_the_gallery_of_its_items(tiny):
    g = tiny.generate(["a <b>", "c"], duration=0.5, seed=1, progress=False)
    html = render_generation(g)
    assert html == gallery([g])._repr_html_()
    assert html.count("<audio") == 2 and "a &lt;b&gt;" in html
