"""EnCodec names: every weight of transformers' EnCodec has an audiocraft name, and back."""

from __future__ import annotations

import torch

from musicgen_nb.checkpoints import encodec_names as en


def test_every_weight_maps_and_comes_back(tiny):
    codec = tiny.model.audio_encoder
    state = codec.state_dict()
    ac = en.state_to_audiocraft(codec)
    assert len(ac) == len(state)
    assert {k.split(".")[1] for k in ac if not k.startswith("quantizer")} == {"model"}
    transposed = [k for k in ac if ".convtr.convtr." in k]
    assert transposed and all(k.startswith("decoder.") for k in transposed)
    back = {en.to_transformers(k): v for k, v in ac.items()}
    assert set(back) == set(state) and all(torch.equal(back[k], state[k].float()) for k in state)


def test_documented_names():
    assert en.to_transformers("encoder.model.0.conv.conv.bias") == "encoder.layers.0.conv.bias"
    assert (
        en.to_transformers("decoder.model.1.lstm.bias_hh_l1") == "decoder.layers.1.lstm.bias_hh_l1"
    )
    assert (
        en.to_audiocraft("encoder.layers.4.shortcut.conv.bias")
        == "encoder.model.4.shortcut.conv.conv.bias"
    )
    assert en.to_audiocraft("nothing.here") is None and en.to_transformers("nothing") is None


def test_the_export_writes_audiocraft_names(tmp_path, tiny):
    from musicgen_nb.checkpoints import audiocraft_format as af

    af.write(tiny.model, tiny.processor, tmp_path, max_duration=4.0)
    comp = torch.load(tmp_path / af.COMPRESSION, weights_only=True)
    assert "quantizer.vq.layers.0._codebook.embed" in comp["best_state"]
    assert "encoder.model.0.conv.conv.weight_g" in comp["best_state"]
