import json
import os

import pytest
import torch

import musicgen_nb as mg
from musicgen_nb.checkpoints import loading
from musicgen_nb.checkpoints.offline import offline_checkpoint


def test_unknown_name_lists_known_names():
    with pytest.raises(ValueError) as err:
        mg.load("musicgen-huge")
    msg = str(err.value)
    assert "musicgen-huge" in msg and "'small'" in msg and "tiny-melody" in msg


def test_unreachable_hub_gives_one_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", os.devnull + "-nohub")
    with pytest.raises(loading.ModelUnavailableError) as err:
        mg.load("facebook/musicgen-small")
    msg = str(err.value)
    assert "not reachable" in msg and "'tiny'" in msg


def test_pickle_weights_are_refused_unless_asked(tmp_path, tiny):
    tiny.model.save_pretrained(tmp_path)
    tiny.processor.save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    torch.save(tiny.model.state_dict(), tmp_path / "pytorch_model.bin")  # a pickle checkpoint
    with pytest.raises(ValueError, match="allow_pickle=True"):
        mg.load(str(tmp_path))
    s = mg.load(str(tmp_path), allow_pickle=True)
    assert s.num_codebooks == 4


def test_name_type_error():
    with pytest.raises(TypeError, match="name_or_path must be a string"):
        mg.load(42)


# ----------------------------------------------------------------- load errors
@pytest.fixture()
def saved(tmp_path, tiny):
    """A copy of the tiny checkpoint in a folder of its own."""
    tiny.model.save_pretrained(tmp_path)
    tiny.processor.save_pretrained(tmp_path)
    return tmp_path


def test_corrupt_config_is_named(saved):
    (saved / "config.json").write_text('{"model_type": "musicgen", ')
    with pytest.raises(ValueError, match=r"config\.json is not valid JSON .*corrupt") as err:
        mg.load(str(saved))
    assert str(saved / "config.json") in str(err.value)
    (saved / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(ValueError, match=r"config\.json has model_type 'bert'"):
        mg.load(str(saved))


def test_truncated_safetensors_is_named(saved):
    weights = saved / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(
        ValueError, match="not a readable safetensors file .truncated or corrupt."
    ) as err:
        mg.load(saved)
    assert str(weights) in str(err.value)


def test_empty_name_and_empty_folder(tmp_path):
    for empty in ("", "  "):
        with pytest.raises(ValueError, match="name_or_path is an empty string"):
            mg.load(empty)
    with pytest.raises(
        ValueError, match="is not a checkpoint folder: it has no config.json .it holds nothing"
    ):
        mg.load(tmp_path)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match=r"holds \['notes.txt'\]"):
        mg.load(tmp_path)


def test_folder_without_weights(saved):
    (saved / "model.safetensors").unlink()
    with pytest.raises(ValueError, match=r"holds no weights: no \*\.safetensors or \*\.bin"):
        mg.load(saved)


def test_bad_musicgen_nb_meta_is_named(saved):
    (saved / "musicgen_nb.json").write_text("[")
    with pytest.raises(ValueError, match=r"musicgen_nb\.json is not valid JSON"):
        mg.load(saved)


# ----------------------------------------------------------------- the functions themselves
def test_resolve_source_of_each_kind_of_name(tmp_path):
    assert loading.resolve_source("small", random_weights=False) == (
        "facebook/musicgen-small",
        None,
    )
    assert loading.resolve_source("facebook/musicgen-melody", random_weights=False)[0] == (
        "facebook/musicgen-melody"
    )
    assert loading.resolve_source("someone/ft", random_weights=False) == ("someone/ft", None)
    assert loading.resolve_source(tmp_path, random_weights=False) == (str(tmp_path), None)
    source, spec = loading.resolve_source("tiny", random_weights=False)
    assert source == str(offline_checkpoint("tiny")) and spec is None
    source, spec = loading.resolve_source("tiny-melody", random_weights=True)
    assert source == "random" and spec["meta"]["name"] == "tiny-melody"
    with pytest.raises(
        ValueError, match="random_weights=True needs a known architecture, got 'x/y'"
    ):
        loading.resolve_source("x/y", random_weights=True)
    with pytest.raises(ValueError, match=r"unknown model './nosuch'; known names: 'small'"):
        loading.resolve_source("./nosuch", random_weights=False)


def test_check_local_accepts_an_offline_checkpoint_and_names_a_bad_config(tmp_path):
    loading.check_local(offline_checkpoint("tiny"), allow_pickle=False)
    (tmp_path / "config.json").write_text("[1]")
    with pytest.raises(ValueError, match=r"config\.json has model_type 'list'"):
        loading.check_local(tmp_path, allow_pickle=False)


def test_read_meta_defaults_and_errors(tmp_path):
    assert loading.read_meta(str(tmp_path), "mine") == {"checkpoint": str(tmp_path), "name": "mine"}
    (tmp_path / "musicgen_nb.json").write_text(json.dumps({"name": "kept", "seed": 3}))
    assert loading.read_meta(str(tmp_path), "mine") == {"name": "kept", "seed": 3}
    (tmp_path / "musicgen_nb.json").write_text("[]")
    with pytest.raises(ValueError, match=r"musicgen_nb\.json must hold a JSON object, got list"):
        loading.read_meta(str(tmp_path), "mine")


def test_param_counts_match_a_built_model():
    total, decoder = loading.param_counts("small")
    assert 410e6 < decoder < 430e6 < total
    assert loading.param_counts("small") is loading.param_counts("small")  # cached


def test_resolve_device_refuses_bad_devices():
    assert loading.resolve_device("cpu") == torch.device("cpu")
    assert loading.resolve_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(ValueError, match="device must be one of"):
        loading.resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device='cuda:1' was asked for, but CUDA is not"):
            loading.resolve_device("cuda:1")


def test_quiet_transformers_restores_the_verbosity():
    from transformers.utils import logging as hf_logging

    before = hf_logging.get_verbosity()
    with loading.quiet_transformers():
        assert hf_logging.get_verbosity() == hf_logging.ERROR
    assert hf_logging.get_verbosity() == before


def test_known_names_lists_every_name():
    text = loading.known_names()
    assert "'small'" in text and "'stereo-melody-large'" in text and "'tiny-stereo'" in text


def test_half_precision_loads_straight_into_its_dtype():
    """transformers' loader reads the weights into bf16 (parameter bytes half of fp32's), the
    kept parts in fp32 and bit-equal to an fp32 load, and forgets the kept list afterwards."""
    import torch
    from transformers import MusicgenForConditionalGeneration as Cls

    from musicgen_nb.checkpoints.offline import offline_checkpoint

    src = str(offline_checkpoint("tiny"))
    ref, _ = loading.from_pretrained(src, allow_pickle=False)
    half, _ = loading.from_pretrained(
        src, allow_pickle=False, dtype=torch.bfloat16, device=torch.device("cpu"),
        keep_fp32=("text_encoder", "enc_to_dec_proj", "audio_encoder"),
    )  # fmt: skip

    def nbytes(module):
        return sum(p.numel() * p.element_size() for p in module.parameters())

    assert half.decoder.dtype == torch.bfloat16 and 2 * nbytes(half.decoder) == nbytes(ref.decoder)
    fp32 = dict(ref.named_parameters())
    for name, p in half.named_parameters():
        if not name.startswith("decoder."):
            assert p.dtype == torch.float32 and torch.equal(p, fp32[name]), name
    assert "_keep_in_fp32_modules_strict" not in Cls.__dict__
    everything, _ = loading.from_pretrained(src, allow_pickle=False, dtype=torch.float16)
    kept = {n for n, p in everything.named_parameters() if p.dtype == torch.float32}
    assert kept and all(".wo." in n for n in kept)  # transformers' own rule: T5's wo in fp16


def test_a_device_load_without_accelerate_reads_on_the_host_then_moves(monkeypatch):
    """accelerate is not a dependency: without it, no device_map (transformers would refuse)."""
    import torch
    import transformers.integrations.accelerate as hf_acc
    from transformers import utils as hf_utils

    from musicgen_nb.checkpoints.offline import offline_checkpoint

    monkeypatch.setattr(hf_utils, "is_accelerate_available", lambda: False)
    monkeypatch.setattr(hf_acc, "is_accelerate_available", lambda: False)
    model, _ = loading.from_pretrained(
        str(offline_checkpoint("tiny")), allow_pickle=False, dtype=torch.bfloat16,
        device=torch.device("cpu"), keep_fp32=("text_encoder",),
    )  # fmt: skip
    assert model.decoder.dtype == torch.bfloat16 and model.text_encoder.dtype == torch.float32
    assert {p.device.type for p in model.parameters()} == {"cpu"}
