"""audiocraft's checkpoint layout: names as transformers' conversion script maps them, weights_only."""

from __future__ import annotations

import pytest
import torch

import musicgen_nb as mg
from musicgen_nb.checkpoints import audiocraft_format as af
from musicgen_nb.checkpoints import audiocraft_names as names


class NotAllowed:  # a pickled object, as a raw omegaconf DictConfig would be
    pass


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


def _audiocraft_export(folder, s, *, chroma: bool) -> None:
    """The files audiocraft writes for a fine-tune of ``s``: its names, no ``musicgen_nb`` entry."""
    state = {k: v for k, v in s.model.state_dict().items()
             if not k.startswith(("text_encoder.", "audio_encoder."))}  # fmt: skip
    best = names.state_to_audiocraft(state)
    if chroma:  # ChromaStemConditioner's buffers: the spectrogram window and the chroma banks
        best[names.PROJ + "self_wav.chroma.spec.window"] = torch.hann_window(2**14)
        best[names.PROJ + "self_wav.chroma.fbanks"] = torch.zeros(12, 2**13 + 1)
    folder.mkdir()
    torch.save({"best_state": best, "xp.cfg": "{}", "version": "1.3.0", "exported": True},
               folder / af.STATE)  # fmt: skip
    torch.save({"pretrained": af.STOCK_CODEC, "exported": True, "version": "1.3.0"},
               folder / af.COMPRESSION)  # fmt: skip


def test_a_real_melody_export_with_chroma_buffers_and_a_pretrained_codec(tmp_path, monkeypatch):
    monkeypatch.setenv("MUSICGEN_NB_STANDIN", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    s = mg.load("facebook/musicgen-melody")
    _audiocraft_export(tmp_path / "real", s, chroma=True)
    # read past both files: only the base model lookup (by decoder shape) is left to fail
    with pytest.raises(ValueError, match="no known MusicGen has this decoder .* melody=True"):
        mg.load(tmp_path / "real")
    ours = af.write(s.model, s.processor, tmp_path / "ours", max_duration=30.0)
    pkg = torch.load(ours / af.STATE, weights_only=True)
    pkg["best_state"].update(torch.load(tmp_path / "real" / af.STATE)["best_state"])
    torch.save(pkg, ours / af.STATE)
    comp = torch.load(ours / af.COMPRESSION, weights_only=True)
    assert comp["pretrained"] == "facebook/encodec_32khz" and "best_state" not in comp
    back = mg.load(ours)
    tune = mg.audio.melody_tone(["C4"], 0.3, 32000)
    a = s.generate("jazz", duration=0.3, seed=5, melody=tune, melody_sr=32000, progress=False)
    b = back.generate("jazz", duration=0.3, seed=5, melody=tune, melody_sr=32000, progress=False)
    assert (a.codes == b.codes).all()


def test_a_best_state_without_embeddings_is_named(tmp_path, tiny):
    _audiocraft_export(tmp_path / "x", tiny, chroma=False)
    pkg = torch.load(tmp_path / "x" / af.STATE, weights_only=True)
    del pkg["best_state"]["emb.0.weight"]
    torch.save(pkg, tmp_path / "x" / af.STATE)
    with pytest.raises(ValueError, match=r"state_dict.bin: best_state has no 'emb.0.weight'"):
        mg.load(tmp_path / "x")


def test_a_compression_file_needs_best_state_or_pretrained(tmp_path, tiny):
    _audiocraft_export(tmp_path / "x", tiny, chroma=False)
    torch.save({"exported": True}, tmp_path / "x" / af.COMPRESSION)
    with pytest.raises(ValueError, match="no 'best_state' dict or a 'pretrained' codec name"):
        mg.load(tmp_path / "x")


def test_xp_cfg_carries_the_keys_audiocraft_builders_read(tmp_path, tiny):
    import yaml

    af.write(tiny.model, tiny.processor, tmp_path, max_duration=4.0)
    cfg = yaml.safe_load(torch.load(tmp_path / af.STATE, weights_only=True)["xp.cfg"])
    assert cfg["lm_model"] == "transformer_lm"
    assert cfg["codebooks_pattern"]["delay"]["delays"] == [0, 1, 2, 3]
    assert cfg["fuser"]["cross"] == ["description"]
    assert (
        cfg["transformer_lm"]["dim"] == 64 and cfg["conditioners"]["description"]["model"] == "t5"
    )
    comp = torch.load(tmp_path / af.COMPRESSION, weights_only=True)  # tiny's codec is not stock
    assert "best_state" in comp and "pretrained" not in comp
