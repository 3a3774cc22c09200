"""audiocraft's weight names, as transformers' conversion scripts map them."""

from __future__ import annotations

import pytest
import torch

import musicgen_nb as mg
from musicgen_nb.checkpoints import audiocraft_names as names


@pytest.mark.parametrize("name", ["tiny", "tiny-melody", "tiny-stereo"])
def test_names_map_both_ways_for_every_decoder_weight(name):
    s = mg.load(name)
    state = {k: v for k, v in s.model.state_dict().items()
             if not k.startswith(("text_encoder.", "audio_encoder."))}  # fmt: skip
    ac = names.state_to_audiocraft(state)
    assert {k.split(".")[0] for k in ac} <= {"emb", "transformer", "out_norm", "linears",
                                             "condition_provider"}  # fmt: skip
    assert ac["transformer.layers.0.self_attn.in_proj_weight"].shape == (192, 64)  # fused q, k, v
    if name == "tiny":
        assert "transformer.layers.1.cross_attention.in_proj_weight" in ac
        assert "transformer.layers.1.norm_cross.bias" in ac
    back = names.state_to_transformers(ac, "f")
    assert set(back) == set(state) and all(torch.equal(back[k], state[k]) for k in state)


def test_documented_names():
    assert (
        names.to_transformers_name("emb.3.weight") == "decoder.model.decoder.embed_tokens.3.weight"
    )
    assert names.to_transformers_name("out_norm.bias") == "decoder.model.decoder.layer_norm.bias"
    assert names.to_transformers_name("linears.1.weight") == "decoder.lm_heads.1.weight"
    assert names.to_transformers_name("transformer.layers.5.linear2.weight").endswith(
        "5.fc2.weight"
    )
    assert names.to_transformers_name("transformer.layers.0.norm1.weight").endswith(
        "self_attn_layer_norm.weight"
    )
    assert names.to_transformers_name(
        "condition_provider.conditioners.self_wav.output_proj.weight"
    ) == ("audio_enc_to_dec_proj.weight")
    assert names.to_transformers_name("something.else") is None


def test_chroma_buffers_are_skipped_and_other_strangers_named():
    window = names.PROJ + "self_wav.chroma.spec.window"
    assert names.state_to_transformers({window: torch.ones(3)}, "f") == {}
    with pytest.raises(ValueError, match=r"f: best_state holds weights that are not MusicGen's"):
        names.state_to_transformers({names.PROJ + "self_wav.demucs.x": torch.ones(3)}, "f")
