"""The fine-tune folder format that load(adapter=) reads; training itself is tested in tests/finetune."""

import json

import pytest
import torch

from musicgen_nb._util.files import sha256_file
from musicgen_nb.checkpoints import adapter as A
from musicgen_nb.checkpoints.offline import build_random
from musicgen_nb.checkpoints.specs import TINY_INIT_SCALE, tiny_spec


def _model():
    return build_random(tiny_spec(), init_scale=TINY_INIT_SCALE)


def _full_finetune(folder, model, *, status="done", scale=2.0):
    """A finished full fine-tune of ``model`` whose decoder weights are ``scale`` times its own."""
    from safetensors.torch import save_file

    folder.mkdir(exist_ok=True)
    cfg = dict(
        lora_rank=None, checkpoint="tiny", data="abc", steps_done=3, final_loss=1.5,
        status=status, decoder_config=A.decoder_config(model),
    )  # fmt: skip
    (folder / A.CONFIG_FILE).write_text(json.dumps(cfg))
    sd = {k: (v * scale).contiguous() for k, v in model.decoder.state_dict().items()}
    save_file(sd, folder / A.FULL_WEIGHTS)
    return folder


def test_file_names_and_weights_file():
    assert A.weights_file(None) == A.FULL_WEIGHTS == "decoder.safetensors"
    assert A.weights_file(16) == A.LORA_WEIGHTS == "adapter_model.safetensors"
    assert (A.CONFIG_FILE, A.CARD_FILE, A.HISTORY_FILE, A.CHECKPOINT) == (
        "training_config.json", "README.md", "history.csv", "checkpoint",
    )  # fmt: skip


def test_decoder_config_has_every_key():
    cfg = A.decoder_config(build_random(tiny_spec(stereo=True)))
    assert tuple(cfg) == A.DECODER_KEYS
    assert cfg["num_codebooks"] == 8 and cfg["audio_channels"] == 2 and cfg["hidden_size"] == 64


def test_a_full_finetune_is_merged_and_recorded(tmp_path):
    model = _model()
    want = model.decoder.lm_heads[0].weight.detach().clone() * 2.0
    folder = _full_finetune(tmp_path / "ft", model)
    merged, meta = A.apply_adapter(model, folder, {"name": "tiny"})
    assert torch.equal(merged.decoder.lm_heads[0].weight, want)
    assert not merged.decoder.training
    prov = meta["adapter"]
    assert meta["name"] == "tiny" and prov == A.adapter_provenance(folder)
    assert prov["path"] == str(folder.resolve()) and prov["kind"] == "full"
    assert prov["sha256"] == sha256_file(folder / A.FULL_WEIGHTS)
    assert (prov["base"], prov["steps"], prov["final_loss"], prov["data"]) == (
        "tiny",
        3,
        1.5,
        "abc",
    )


def test_apply_adapter_names_what_is_wrong(tmp_path):
    model = _model()
    with pytest.raises(TypeError, match="adapter must be a folder written by mg.finetune.train"):
        A.apply_adapter(model, 3, {})
    with pytest.raises(ValueError, match=r"is not a fine-tune folder \(no training_config.json\)"):
        A.apply_adapter(model, tmp_path, {})
    unfinished = _full_finetune(tmp_path / "unfinished", model, status="running")
    with pytest.raises(ValueError, match=r"holds an unfinished run \(no decoder.safetensors\)"):
        A.apply_adapter(model, unfinished, {})
    other = _full_finetune(tmp_path / "other", build_random(tiny_spec(stereo=True)))
    with pytest.raises(ValueError, match="was trained on 'tiny', whose decoder differs"):
        A.apply_adapter(model, other, {})


def _lora_finetune(folder, model, rank=2):
    """A finished LoRA fine-tune of ``model`` (random LoRA weights), written the way train does."""
    import peft

    from musicgen_nb.finetune.weights import LORA_TARGETS

    torch.manual_seed(0)
    cfg = peft.LoraConfig(
        r=rank, lora_alpha=rank, target_modules=LORA_TARGETS, init_lora_weights=False
    )
    import copy

    peft.get_peft_model(copy.deepcopy(model.decoder), cfg).save_pretrained(folder)
    info = dict(lora_rank=rank, checkpoint="tiny", architecture=type(model).__name__, data="abc",
                steps_done=3, status="done", decoder_config=A.decoder_config(model))  # fmt: skip
    (folder / A.CONFIG_FILE).write_text(json.dumps(info))
    return folder


def test_damaged_config_and_weights_are_named_with_the_folder(tmp_path):
    model = _model()
    folder = _full_finetune(tmp_path / "ft", model)
    (folder / A.CONFIG_FILE).write_text('{"lora_rank": null, "checkp')
    with pytest.raises(
        ValueError, match=rf"adapter folder '{folder}': training_config.json is damaged \(not JSON"
    ):
        A.apply_adapter(model, folder, {"name": "tiny"})
    with pytest.raises(ValueError, match="training_config.json is damaged"):
        A.adapter_provenance(folder)
    (folder / A.CONFIG_FILE).write_text(json.dumps(dict(lora_rank=None, status="done")))
    with pytest.raises(
        ValueError, match=r"training_config.json is damaged \(no checkpoint, data, decoder_config\)"
    ):
        A.apply_adapter(model, folder, {"name": "tiny"})
    (folder / A.CONFIG_FILE).write_bytes(b"\xff\xfe")
    with pytest.raises(ValueError, match="training_config.json is damaged"):
        A.apply_adapter(model, folder, {"name": "tiny"})
    folder = _full_finetune(tmp_path / "ft2", model)
    (folder / A.FULL_WEIGHTS).write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{")
    with pytest.raises(
        ValueError, match=rf"adapter folder '{folder}': decoder.safetensors is damaged"
    ):
        A.apply_adapter(model, folder, {"name": "tiny"})


def test_a_damaged_lora_file_is_named(tmp_path):
    pytest.importorskip("peft")
    model = _model()
    folder = _lora_finetune(tmp_path / "lora", model)
    weights = folder / A.LORA_WEIGHTS
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(
        ValueError,
        match=rf"adapter folder '{folder}': adapter_model.safetensors or adapter_config.json is damaged",
    ):
        A.apply_adapter(_model(), folder, {"name": "tiny"})


def test_a_lora_merges_only_into_its_own_base(tmp_path):
    pytest.importorskip("peft")
    model = _model()
    folder = _lora_finetune(tmp_path / "lora", model)
    merged, meta = A.apply_adapter(_model(), folder, {"name": "tiny", "checkpoint": "tiny"})
    assert meta["adapter"]["kind"] == "lora"
    import musicgen_nb as mg

    melody = mg.load("tiny-melody")
    assert A.decoder_config(melody.model) == A.decoder_config(model)  # same shapes, other model
    with pytest.raises(
        ValueError,
        match=r"trained on 'tiny' \(MusicgenForConditionalGeneration\); this model is 'tiny-melody'",
    ):
        A.apply_adapter(melody.model, folder, dict(melody.meta))
    with pytest.raises(ValueError, match=r"this model is 'tiny-melody'"):
        mg.load("tiny-melody", adapter=folder)


def test_full_weights_of_another_architecture_are_refused_clearly(tmp_path):
    from safetensors.torch import save_file

    model = _model()
    folder = _full_finetune(tmp_path / "ft", model)
    other = build_random(tiny_spec(stereo=True))
    save_file(
        {k: v.contiguous() for k, v in other.decoder.state_dict().items()}, folder / A.FULL_WEIGHTS
    )
    with pytest.raises(
        ValueError, match=r"decoder.safetensors holds the weights of another decoder architecture"
    ):
        A.apply_adapter(model, folder, {"name": "tiny"})


def test_a_diverged_run_is_not_an_adapter(tmp_path):
    folder = _full_finetune(tmp_path / "ft", _model(), status="diverged")
    cfg = json.loads((folder / A.CONFIG_FILE).read_text())
    (folder / A.CONFIG_FILE).write_text(json.dumps(cfg | dict(diverged_at=7)))
    with pytest.raises(ValueError, match="holds a run that diverged at step 7"):
        A.apply_adapter(_model(), folder, {"name": "tiny"})


def test_the_same_base_loaded_from_a_folder_takes_its_lora(tmp_path):
    # mg.load("small") then mg.load("/content/musicgen-small") (an HF snapshot): one model.
    pytest.importorskip("peft")
    model = _model()
    folder = _lora_finetune(tmp_path / "lora", model)
    snapshot = {"name": "/content/musicgen-tiny", "checkpoint": "/content/musicgen-tiny"}
    merged, meta = A.apply_adapter(_model(), folder, snapshot)
    assert meta["adapter"]["kind"] == "lora"
    # A folder that does not record the architecture is still checked by the checkpoint's name.
    info = json.loads((folder / A.CONFIG_FILE).read_text())
    del info["architecture"]
    (folder / A.CONFIG_FILE).write_text(json.dumps(info))
    with pytest.raises(
        ValueError, match=r"trained on 'tiny'; this model is '/content/musicgen-tiny'"
    ):
        A.apply_adapter(_model(), folder, snapshot)
