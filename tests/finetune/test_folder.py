"""The files of a fine-tuning folder: both caption layouts, and the check of each file."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

import musicgen_nb as mg
from musicgen_nb import finetune as FT
from musicgen_nb.finetune.folder import DataError, check_file, check_items, read_captions


def _write(path, seconds=1.5, sr=32000, amp=0.5):
    t = np.arange(int(seconds * sr)) / sr
    mg.audio.write(path, (amp * np.sin(2 * np.pi * 330 * t)).astype(np.float32), sr)


def test_both_layouts_read_the_same_captions(tmp_path):
    names = {"a.wav": "warm pad", "sub/b.wav": "fast drums"}
    for layout in ("csv", "jsonl", "txt"):
        d = tmp_path / layout
        for name, text in names.items():
            (d / name).parent.mkdir(parents=True, exist_ok=True)
            _write(d / name)
            if layout == "txt":
                (d / name).with_suffix(".txt").write_text(text + "\n")
        rows = [dict(file_name=n, text=t) for n, t in names.items()]
        if layout == "csv":
            with open(d / "metadata.csv", "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=["file_name", "text"])
                w.writeheader()
                w.writerows(rows)
        elif layout == "jsonl":
            (d / "metadata.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
        data = FT.dataset(d)
        got = {i.file.relative_to(d).as_posix(): i.text for i in data.items}
        assert got == names, layout
        assert (
            data.layout == {"csv": "metadata.csv", "jsonl": "metadata.jsonl", "txt": "txt"}[layout]
        )


def test_read_captions_lists_uncaptioned_files_and_blank_captions(tmp_path):
    for name in ("a.wav", "b.flac", "c.wav", "notes.md"):
        (tmp_path / name).touch()
    (tmp_path / "metadata.jsonl").write_text(
        json.dumps(dict(file_name="a.wav", text=" pad ")) + "\n\n"
        + json.dumps(dict(file_name="b.flac", text="  ")) + "\n"
    )  # fmt: skip
    layout, captions, missing = read_captions(tmp_path)
    assert layout == "metadata.jsonl"
    assert captions == {"a.wav": "pad", "b.flac": None}
    assert [p.name for p in missing] == ["c.wav"]


def test_read_captions_refuses_two_metadata_files_and_bad_json(tmp_path):
    (tmp_path / "metadata.csv").write_text("file_name,text\n")
    (tmp_path / "metadata.jsonl").write_text("")
    with pytest.raises(ValueError, match="both metadata.csv and metadata.jsonl"):
        read_captions(tmp_path)
    (tmp_path / "metadata.csv").unlink()
    (tmp_path / "metadata.jsonl").write_text('{"file_name": "a.wav", "text": "x"}\n{oops\n')
    with pytest.raises(ValueError, match="line 2 is not JSON"):
        read_captions(tmp_path)


def test_check_file_names_the_file_and_what_is_wrong(tmp_path):
    _write(tmp_path / "ok.wav", seconds=1.5)
    item = check_file(tmp_path, "ok.wav", "pad", min_duration=1.0, silence_db=-60.0)
    assert (item.text, item.sample_rate, round(item.duration, 3)) == ("pad", 32000, 1.5)
    assert len(item.sha256) == 64
    with pytest.raises(DataError, match=r"^gone.wav: listed in the metadata but there is no such"):
        check_file(tmp_path, "gone.wav", "x", min_duration=1.0, silence_db=-60.0)
    with pytest.raises(DataError, match=r"^ok.wav: no caption .* or a ok.txt\)"):
        check_file(tmp_path, "ok.wav", None, min_duration=1.0, silence_db=-60.0)
    with pytest.raises(DataError, match=r"too short \(1.50 s; min_duration is 2 s\)"):
        check_file(tmp_path, "ok.wav", "pad", min_duration=2.0, silence_db=-60.0)
    with pytest.raises(DataError, match=r"silent \(peak -6.0 dBFS; the threshold is -3\)"):
        check_file(tmp_path, "ok.wav", "pad", min_duration=1.0, silence_db=-3.0)


def test_check_items_raises_when_strict_and_warns_otherwise(tmp_path):
    _write(tmp_path / "ok.wav")
    names, captions = ["ok.wav", "nocap.wav"], {"ok.wav": "pad"}
    _write(tmp_path / "nocap.wav")
    with pytest.warns(UserWarning, match="skipping nocap.wav: no caption"):
        items, skipped = check_items(
            tmp_path, names, captions, min_duration=1.0, silence_db=-60.0, strict=False
        )
    assert [i.file.name for i in items] == ["ok.wav"] and skipped[0][0] == "nocap.wav"
    with pytest.raises(DataError, match="nocap.wav"):
        check_items(tmp_path, names, captions, min_duration=1.0, silence_db=-60.0, strict=True)
