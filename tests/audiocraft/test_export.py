"""export_checkpoint: audiocraft's layout, read back by mg.load with the same codes."""

from __future__ import annotations

import pytest
import torch

import musicgen_nb as mg
from musicgen_nb.audiocraft import MusicGen, export_checkpoint


def test_round_trip_of_a_standin_gives_the_same_codes(tmp_path, monkeypatch):
    monkeypatch.setenv("MUSICGEN_NB_STANDIN", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    s = mg.load("facebook/musicgen-melody")
    folder = export_checkpoint(s, tmp_path / "ft")
    pkg = torch.load(folder / "state_dict.bin", weights_only=True)
    assert "emb.0.weight" in pkg["best_state"] and isinstance(pkg["xp.cfg"], str)
    comp = torch.load(folder / "compression_state_dict.bin", weights_only=True)
    assert comp["pretrained"] == "facebook/encodec_32khz" and comp["exported"] is True
    back = mg.load(folder)
    assert back.max_duration == 30.0 and back.is_melody
    tune = mg.audio.melody_tone(["C4"], 0.5, 32000)
    a = s.generate("jazz", duration=0.5, seed=5, melody=tune, melody_sr=32000, progress=False)
    b = back.generate("jazz", duration=0.5, seed=5, melody=tune, melody_sr=32000, progress=False)
    assert (a.codes == b.codes).all()


def test_audiocraft_model_exports_too(tmp_path):
    m = MusicGen.get_pretrained("tiny", device="cpu")
    export_checkpoint(m, tmp_path)
    assert MusicGen.get_pretrained(str(tmp_path), device="cpu").max_duration == 4.0


def test_refuses_to_overwrite_and_bad_sessions(tmp_path, tiny):
    export_checkpoint(tiny, tmp_path)
    before = (tmp_path / "state_dict.bin").read_bytes()
    with pytest.raises(FileExistsError, match="state_dict.bin exists"):
        export_checkpoint(tiny, tmp_path)
    assert (tmp_path / "state_dict.bin").read_bytes() == before
    with pytest.raises(TypeError, match="session must come from musicgen_nb.load"):
        export_checkpoint("tiny", tmp_path / "x")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        export_checkpoint(tiny, tmp_path / "file")
