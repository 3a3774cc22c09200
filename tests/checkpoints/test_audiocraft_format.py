"""audiocraft's checkpoint layout: names as transformers' conversion script maps them, weights_only."""

from __future__ import annotations

import pytest
import torch

import musicgen_nb as mg
from musicgen_nb.checkpoints import audiocraft_format as af


class NotAllowed:  # a pickled object, as a raw omegaconf DictConfig would be
    pass


@pytest.mark.parametrize("name", ["tiny", "tiny-melody", "tiny-stereo"])
def test_names_map_both_ways_for_every_decoder_weight(name):
    s = mg.load(name)
    state = {k: v for k, v in s.model.state_dict().items()
             if not k.startswith(("text_encoder.", "audio_encoder."))}  # fmt: skip
    ac = af._to_audiocraft(state)
    assert {k.split(".")[0] for k in ac} <= {"emb", "transformer", "out_norm", "linears",
                                             "condition_provider"}  # fmt: skip
    assert ac["transformer.layers.0.self_attn.in_proj_weight"].shape == (192, 64)  # fused q, k, v
    if name == "tiny":
        assert "transformer.layers.1.cross_attention.in_proj_weight" in ac
        assert "transformer.layers.1.norm_cross.bias" in ac
    back = af._to_transformers(ac, "f")
    assert set(back) == set(state) and all(torch.equal(back[k], state[k]) for k in state)


def test_documented_names():
    assert af.to_transformers_name("emb.3.weight") == "decoder.model.decoder.embed_tokens.3.weight"
    assert af.to_transformers_name("out_norm.bias") == "decoder.model.decoder.layer_norm.bias"
    assert af.to_transformers_name("linears.1.weight") == "decoder.lm_heads.1.weight"
    assert af.to_transformers_name("transformer.layers.5.linear2.weight").endswith("5.fc2.weight")
    assert af.to_transformers_name("transformer.layers.0.norm1.weight").endswith(
        "self_attn_layer_norm.weight"
    )
    assert af.to_transformers_name(
        "condition_provider.conditioners.self_wav.output_proj.weight"
    ) == ("audio_enc_to_dec_proj.weight")
    assert af.to_transformers_name("something.else") is None


def test_pickled_objects_are_refused_naming_the_file(tmp_path, tiny):
    af.write(tiny.model, tiny.processor, tmp_path, max_duration=4.0)
    pkg = torch.load(tmp_path / af.STATE, weights_only=True)
    pkg["xp.cfg"] = NotAllowed()
    torch.save(pkg, tmp_path / af.STATE)
    with pytest.raises(
        ValueError, match=r"state_dict.bin cannot be read with torch.load\(weights_only=True\)"
    ):
        mg.load(tmp_path)


def test_foreign_weights_and_unknown_shapes_are_named(tmp_path, tiny):
    af.write(tiny.model, tiny.processor, tmp_path, max_duration=4.0)
    pkg = torch.load(tmp_path / af.STATE, weights_only=True)
    pkg["best_state"]["adapter.lora_A"] = torch.zeros(2)
    torch.save(pkg, tmp_path / af.STATE)
    with pytest.raises(ValueError, match=r"not MusicGen's \(1, first \['adapter.lora_A'\]\)"):
        mg.load(tmp_path)
    del pkg["best_state"]["adapter.lora_A"], pkg["musicgen_nb"]  # a real audiocraft export
    torch.save(pkg, tmp_path / af.STATE)
    with pytest.raises(ValueError, match="no known MusicGen has this decoder .width 64, 2 layers"):
        mg.load(tmp_path)


def test_missing_files_and_layout_detection(tmp_path, tiny):
    assert not af.is_layout(tmp_path)
    af.write(tiny.model, tiny.processor, tmp_path, max_duration=4.0)
    assert af.is_layout(tmp_path)
    (tmp_path / af.COMPRESSION).unlink()
    with pytest.raises(ValueError, match="compression_state_dict.bin is missing"):
        mg.load(tmp_path)


def test_xp_cfg_is_yaml_text_with_the_facts(tmp_path, tiny):
    import yaml

    af.write(tiny.model, tiny.processor, tmp_path, max_duration=4.0)
    cfg = yaml.safe_load(torch.load(tmp_path / af.STATE, weights_only=True)["xp.cfg"])
    assert cfg["transformer_lm"]["n_q"] == 4 and cfg["dataset"]["segment_duration"] == 4.0
    assert cfg["sample_rate"] == 32000
