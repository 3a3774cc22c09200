import pytest

from musicgen_nb.checkpoints import specs


def test_known_architectures_are_the_real_configs():
    known = specs.known()
    assert list(known)[:4] == ["small", "medium", "large", "melody"]
    dec = known["medium"]["config"]["decoder"]
    assert (dec["hidden_size"], dec["num_hidden_layers"], dec["num_attention_heads"]) == (
        1536,
        48,
        24,
    )
    assert known["large"]["config"]["decoder"]["hidden_size"] == 2048
    assert known["melody"]["config"]["model_type"] == "musicgen_melody"
    assert known["stereo-small"]["config"]["decoder"]["audio_channels"] == 2


def test_tiny_spec_is_small_with_a_short_window():
    spec = specs.tiny_spec()
    assert spec["meta"]["max_duration"] == 4.0
    assert spec["config"]["decoder"]["num_codebooks"] == 4
    assert spec["config"]["audio_encoder"]["upsampling_ratios"] == [8, 5, 4, 4]  # 640 hop: 50 Hz


def test_model_class_rejects_other_types():
    with pytest.raises(ValueError, match="model_type must be"):
        specs.model_class("bert")


def test_offline_spec_of_each_offline_name():
    for name in specs.OFFLINE:
        assert specs.offline_spec(name)["meta"]["name"] == name
    with pytest.raises(ValueError, match="tiny-stereo-melody.*got 'stereo'"):
        specs.offline_spec("stereo")


def test_short_name_of_short_names_and_hub_ids():
    for short, spec in specs.known().items():
        assert specs.short_name(short) == short
        assert specs.short_name(spec["meta"]["checkpoint"]) == short
    for other in ("tiny", "someone/musicgen-melody-jazz", "", "facebook/musicgen-huge"):
        assert specs.short_name(other) is None


def test_build_config_follows_the_model_type():
    small = specs.build_config(specs.known()["small"]["config"])
    melody = specs.build_config(specs.known()["melody"]["config"])
    assert type(small).__name__ == "MusicgenConfig" and small.decoder.hidden_size == 1024
    assert type(melody).__name__ == "MusicgenMelodyConfig" and melody.num_chroma == 12


def test_the_package_imports_no_torch():
    """The stand-in switch (and so the pytest plugin) must stay cheap to import."""
    import subprocess
    import sys

    code = "import sys, musicgen_nb.checkpoints.standins; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
