import json

import numpy as np
import pytest

import musicgen_nb as mg
from musicgen_nb.checkpoints import offline, specs


def test_offline_checkpoint_is_saved_safetensors_and_deterministic(tmp_path):
    a = offline.offline_checkpoint("tiny", cache_dir=tmp_path / "a")
    b = offline.offline_checkpoint("tiny", cache_dir=tmp_path / "b")
    assert (a / "model.safetensors").exists() and not list(a.glob("*.bin"))
    assert (a / "tokenizer.json").exists()
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    # Loading a saved directory goes through from_pretrained like a hub checkpoint.
    s = mg.load(str(a))
    assert s.num_codebooks == 4 and s.max_duration == 4.0


def test_offline_codebooks_are_not_degenerate(tiny):
    codec = tiny.model.audio_encoder
    for layer in codec.quantizer.layers:
        assert layer.codebook.embed.abs().sum() > 0
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 2048, size=(2, 4, 20))
    audio = tiny.decode(codes)
    assert not np.allclose(audio[0], audio[1])
    t = np.arange(32000) / 32000
    a = tiny.encode(np.sin(2 * np.pi * 220 * t).astype(np.float32), 32000)
    b = tiny.encode(rng.standard_normal(32000).astype(np.float32) * 0.3, 32000)
    assert (a != b).mean() > 0.5


def test_offline_meta_file(tmp_path):
    path = offline.offline_checkpoint("tiny-melody", cache_dir=tmp_path)
    meta = json.loads((path / "musicgen_nb.json").read_text())
    assert meta["name"] == "tiny-melody" and meta["melody"] is True and meta["seed"] == specs.SEED


def test_offline_checkpoint_rejects_unknown_names(tmp_path):
    with pytest.raises(ValueError, match="tiny"):
        offline.offline_checkpoint("small", cache_dir=tmp_path)


@pytest.mark.parametrize("name", ["tiny-stereo", "tiny-stereo-melody"])
def test_stereo_offline_checkpoints_generate_two_channels(name):
    """The stand-ins of the stereo checkpoints: 2 channels, 8 interleaved codebooks."""
    s = mg.load(name)
    real = specs.known()["stereo-melody" if s.is_melody else "stereo-small"]["config"]
    assert s.is_melody == name.endswith("-melody")
    assert s.audio_channels == real["decoder"]["audio_channels"] == 2
    assert s.num_codebooks == real["decoder"]["num_codebooks"] == 8
    kwargs = {}
    if s.is_melody:
        kwargs = dict(melody=mg.audio.melody_tone(["C4", "G4"], 0.5, 32000), melody_sr=32000)
    g = s.generate("jazz", duration=0.5, seed=0, progress=False, **kwargs)
    assert g.audio.shape == (1, 2, 16000) and g.codes.shape == (1, 8, 25)
    assert (g.codes[0, 0::2] != g.codes[0, 1::2]).any()  # left and right are sampled apart
    assert not np.allclose(g.audio[0, 0], g.audio[0, 1])
    assert mg.load(name, random_weights=True).audio_channels == 2


def test_cache_root_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("MUSICGEN_NB_CACHE", str(tmp_path))
    assert offline.cache_root() == tmp_path
    monkeypatch.delenv("MUSICGEN_NB_CACHE")
    assert offline.cache_root().parts[-2:] == (".cache", "musicgen_nb")


def test_build_random_is_seeded_and_offline_processor_tokenizes():
    a = offline.build_random(specs.tiny_spec(), init_scale=specs.TINY_INIT_SCALE)
    b = offline.build_random(specs.tiny_spec(), init_scale=specs.TINY_INIT_SCALE)
    c = offline.build_random(specs.tiny_spec(), seed=1, init_scale=specs.TINY_INIT_SCALE)
    wa, wb, wc = (m.decoder.lm_heads[0].weight.detach() for m in (a, b, c))
    assert (wa == wb).all() and not (wa == wc).all()
    assert abs(float(wa.std()) - specs.TINY_INIT_SCALE) < 0.02
    processor = offline.offline_processor()
    assert processor.tokenizer("jazz").input_ids == [
        processor.tokenizer.convert_tokens_to_ids("\u2581jazz"),
        1,
    ]


def test_a_cache_variable_pointing_at_a_file_is_named(monkeypatch, tmp_path):
    """Before: a bare FileExistsError from mkdir, naming neither the variable nor the fix."""
    import pytest

    from musicgen_nb.checkpoints.offline import cache_root, offline_checkpoint

    afile = tmp_path / "cache.txt"
    afile.write_text("")
    monkeypatch.setenv("MUSICGEN_NB_CACHE", str(afile))
    with pytest.raises(ValueError, match="MUSICGEN_NB_CACHE=.*cache.txt' is a file, not a folder"):
        cache_root()
    with pytest.raises(ValueError, match="MUSICGEN_NB_CACHE"):
        offline_checkpoint("tiny")
