import base64

import numpy as np
import pytest

from musicgen_nb.players.assets import asset
from musicgen_nb.ui import SyncedPlayer
from musicgen_nb.ui._util import codes_payload, spectrogram_payload


def test_front_end_files_ship_with_the_widget():
    assert "export default" in asset("synced_player.js")
    assert ".mgnb-player" in asset("synced_player.css")
    assert SyncedPlayer._esm == asset("synced_player.js")


def test_from_generation_sends_compact_payloads(tiny):
    g = tiny.generate("jazz", duration=1.0, seed=0, progress=False)
    p = SyncedPlayer.from_generation(g)
    assert p.audio_url.startswith("data:audio/")
    assert (p.num_codebooks, p.frames, p.frame_rate) == (4, 50, 50.0)
    codes = np.frombuffer(base64.b64decode(p.codes_b64), dtype="<u2").reshape(4, 50)
    np.testing.assert_array_equal(codes, g.codes[0])
    bins, cols = p.spec_shape
    assert bins == 64 and cols > 0
    assert len(base64.b64decode(p.spec_b64)) == bins * cols
    assert p.duration == pytest.approx(1.0) and "jazz" in p.label and str(g.seed) in p.label


def test_seek_and_current_frame():
    p = SyncedPlayer().show(
        np.zeros(32000, dtype=np.float32), 32000, codes=np.zeros((4, 50), dtype=np.int64)
    )
    p.seek(0.5)
    assert p.current_time == 0.5 and p.current_frame == 25
    with pytest.raises(ValueError, match="seconds must be in"):
        p.seek(3.0)


def test_payload_caps():
    codes = np.arange(4 * 9000).reshape(4, 9000) % 2048
    b64, k, t = codes_payload(codes, 3000)
    assert (k, t) == (4, 3000)
    got = np.frombuffer(base64.b64decode(b64), dtype="<u2").reshape(4, 3000)
    np.testing.assert_array_equal(got, codes[:, ::3])
    spec, shape = spectrogram_payload(
        np.random.default_rng(0).standard_normal(32000 * 60), 32000, max_cols=800
    )
    assert shape[0] == 64 and shape[1] <= 801


def test_bad_shapes_are_refused():
    p = SyncedPlayer()
    with pytest.raises(ValueError, match="audio must be"):
        p.show(np.zeros((1, 1, 1, 10)), 32000)
    with pytest.raises(ValueError, match="codes must be"):
        p.show(np.zeros(320), 32000, codes=np.zeros(5))


def test_widget_state_and_mimebundle():
    p = SyncedPlayer()
    state = p.get_state()
    for key in ("audio_url", "codes_b64", "spec_b64", "current_time", "frame_rate"):
        assert key in state
    bundle = p._repr_mimebundle_()
    data = bundle[0] if isinstance(bundle, tuple) else bundle
    assert "application/vnd.jupyter.widget-view+json" in data
