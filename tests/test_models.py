import pytest
import torch

import musicgen_nb as mg
from musicgen_nb import models


def test_list_models_has_every_checkpoint_with_real_sizes():
    df = mg.list_models()
    names = set(df["name"])
    assert {"small", "medium", "large", "melody", "stereo-small", "stereo-melody"} <= names
    row = df.set_index("name").loc["small"]
    assert row["checkpoint"] == "facebook/musicgen-small"
    assert 410e6 < row["decoder_params"] < 430e6  # ~420M decoder
    assert row["sample_rate"] == 32000 and row["frame_rate"] == 50 and row["num_codebooks"] == 4
    assert row["fp32_gb"] == pytest.approx(2 * row["fp16_gb"], rel=0.01)
    big = df.set_index("name")
    assert big.loc["large", "params"] > big.loc["medium", "params"] > big.loc["small", "params"]
    assert big.loc["melody", "melody"] and not big.loc["small", "melody"]
    assert big.loc["stereo-small", "num_codebooks"] == 8 and big.loc["stereo-small", "stereo"]


def test_load_tiny_facts(tiny):
    assert isinstance(tiny, mg.MusicGen)
    assert (tiny.sample_rate, tiny.frame_rate, tiny.num_codebooks) == (32000, 50, 4)
    assert tiny.max_duration == 4.0 and not tiny.is_melody
    assert tiny.device.type == "cpu" and tiny.dtype == torch.float32
    assert type(tiny.model).__name__ == "MusicgenForConditionalGeneration"
    assert "tiny" in repr(tiny)


def test_load_tiny_melody(tiny_melody):
    assert tiny_melody.is_melody
    assert type(tiny_melody.model).__name__ == "MusicgenMelodyForConditionalGeneration"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(precision="fp64"), "precision must be one of"),
        (dict(device="tpu"), "device must be one of"),
        (dict(device=3), "device must be a string"),
        (dict(random_weights="yes"), "random_weights must be True or False"),
        (dict(precision="int8", device="meta"), "device must be one of"),
    ],
)
def test_bad_load_arguments(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        mg.load("tiny", **kwargs)


def test_device_and_precision_auto_on_cpu():
    dev = models.resolve_device("auto")
    assert dev.type in ("cpu", "cuda", "mps")
    assert models.resolve_precision("auto", torch.device("cpu")) == "fp32"
    with pytest.raises(ValueError, match="int8"):
        models.resolve_precision("int8", torch.device("cuda"))


def test_random_weights_builds_tiny_without_saving(tmp_path, monkeypatch):
    monkeypatch.setenv("MUSICGEN_NB_CACHE", str(tmp_path))
    s = mg.load("tiny", random_weights=True)
    assert s.meta.get("random_weights") is True
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_random_weights_small_has_the_real_parameter_count():
    s = mg.load("small", random_weights=True)
    decoder = sum(p.numel() for p in s.model.decoder.parameters())
    assert decoder == mg.list_models().set_index("name").loc["small", "decoder_params"]
    assert 410e6 < decoder < 430e6
    cfg = s.model.config.decoder
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads) == (1024, 24, 16)
    assert s.max_duration == 30.0


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(device="mps"), ValueError, r"device='mps' was asked for, but MPS is not available"),
        (dict(device="mps:0"), ValueError, "MPS is not available"),
        (dict(allow_pickle="no"), TypeError, "allow_pickle must be True or False, got 'no'"),
        (dict(allow_pickle=0), TypeError, "allow_pickle must be True or False"),
        (dict(device="cpu:x"), ValueError, "device='cpu:x' is not a valid device"),
    ],
)
def test_bad_device_and_pickle_flag(kwargs, exc, match):
    if "mps" in kwargs.get("device", "") and torch.backends.mps.is_available():
        pytest.skip("MPS is available here")
    with pytest.raises(exc, match=match):
        mg.load("tiny", **kwargs)


def test_sidecars_record_precision_and_device(tmp_path):
    """A clip made in int8 does not replay in fp32: its sidecar says which it was."""
    import json

    for precision in ("fp32", "int8"):
        s = mg.load("tiny", precision=precision)
        assert s.provenance == {"precision": precision, "device": "cpu"}
        g = s.generate("x", duration=0.2, seed=1, progress=False)
        (audio,) = g.save(tmp_path / precision)
        meta = json.loads(audio.with_suffix(".json").read_text())
        assert (meta["precision"], meta["device"], meta["model"]) == (precision, "cpu", "tiny")


def test_loading_names_stay_importable_from_models(tiny):
    """Old deep imports keep working: the names are the checkpoints.loading ones."""
    from musicgen_nb.checkpoints import loading

    assert models.ModelUnavailableError is loading.ModelUnavailableError
    assert models.resolve_device is loading.resolve_device
    assert models.PRECISIONS == loading.PRECISIONS and models.DEVICES == loading.DEVICES
    assert tiny.random_weights and not tiny.is_standin and tiny.meta["checkpoint"] == "tiny"


def test_half_precision_keeps_text_encoder_and_codec_fp32_unless_asked():
    import numpy as np
    import torch

    s = mg.load("tiny", precision="bf16")
    assert s.dtype == torch.bfloat16 and s.precision == "bf16"
    assert s.provenance["keep_fp32"] == ["text_encoder", "audio_encoder"]
    assert s.model.text_encoder.dtype == s.model.audio_encoder.dtype == torch.float32
    codes = np.zeros((1, 4, 50), np.int64)
    np.testing.assert_array_equal(s.decode(codes), mg.load("tiny").decode(codes))  # fp32 codec
    g = s.generate("jazz", duration=1, seed=0, progress=False)
    assert g.codes.shape == (1, 4, 50)
    cast = mg.load("tiny", precision="bf16", keep_fp32=())
    assert {p.dtype for p in cast.model.parameters()} == {torch.bfloat16}
    assert cast.provenance["keep_fp32"] == [] and "keep_fp32" not in mg.load("tiny").provenance
    assert cast.generate("jazz", duration=1, seed=0, progress=False).codes.shape == (1, 4, 50)
    melody = mg.load("tiny-melody", precision="fp16")
    assert melody.model.text_encoder.dtype == torch.float32
    assert melody.generate("x", duration=0.5, seed=0, progress=False).codes.shape == (1, 4, 25)


@pytest.mark.parametrize("name", ["MUSICGEN_NB_ADAPTIVE_THREADS", "MUSICGEN_NB_KERNELS"])
def test_a_bad_engine_switch_is_refused_before_any_loading(monkeypatch, name):
    monkeypatch.setenv(name, "perhaps")
    with pytest.raises(ValueError, match=f"{name} must be"):
        mg.load("no-such-model")  # the name is not even looked up
