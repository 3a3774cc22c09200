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
    layout, captions, missing, bad = read_captions(tmp_path)
    assert layout == "metadata.jsonl"
    assert captions == {"a.wav": "pad", "b.flac": None}
    assert [p.name for p in missing] == ["c.wav"] and bad == []


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


def test_synth_dataset_refuses_a_used_folder(tmp_path):
    FT.synth_dataset(tmp_path, seconds=0.5)
    with pytest.raises(FileExistsError, match="tune0.wav exists"):
        FT.synth_dataset(tmp_path, seconds=0.5)


# ---------------------------------------------------------------------------- outside the folder
def _captioned(d, names=("a.wav",)):
    d.mkdir(exist_ok=True)
    for n in names:
        _write(d / n)
    return d


@pytest.mark.parametrize("layout", ["csv", "jsonl"])
def test_paths_outside_the_folder_are_refused_naming_file_line_and_path(tmp_path, layout):
    d = _captioned(tmp_path / "d")
    _write(tmp_path / "secret.wav")
    (tmp_path / "links").mkdir()
    (tmp_path / "links" / "link.wav").symlink_to(tmp_path / "secret.wav")
    (d / "link.wav").symlink_to(tmp_path / "links" / "link.wav")  # found by the listing too
    for bad in ("../secret.wav", str(tmp_path / "secret.wav"), "link.wav"):
        rows = [dict(file_name="a.wav", text="ok"), dict(file_name=bad, text="stolen")]
        for meta in ("metadata.csv", "metadata.jsonl"):
            (d / meta).unlink(missing_ok=True)
        if layout == "csv":
            with open(d / "metadata.csv", "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=["file_name", "text"])
                w.writeheader()
                w.writerows(rows)
        else:
            (d / "metadata.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
        meta = f"metadata.{layout}"
        line = 3 if layout == "csv" else 2
        for strict in (False, True):  # refused in both modes, not skipped
            with pytest.raises(
                DataError, match=rf"^{meta} line {line}: '{bad}' (is outside|resolves to)"
            ):
                FT.dataset(d, strict=strict)


def test_symlinked_audio_and_captions_are_refused(tmp_path):
    d = _captioned(tmp_path / "d")
    (d / "a.txt").symlink_to("/etc/hostname")
    with pytest.raises(DataError, match=r"^a.txt: 'a.txt' resolves to /etc/hostname, outside"):
        FT.dataset(d)
    (d / "a.txt").unlink()
    (d / "a.txt").write_text("fine")
    _write(tmp_path / "out.wav")
    (d / "b.wav").symlink_to(tmp_path / "out.wav")
    with pytest.raises(DataError, match=r"^b.wav: 'b.wav' resolves to .*out.wav, outside"):
        FT.dataset(d)
    (d / "b.wav").unlink()
    (d / "sub").symlink_to(tmp_path, target_is_directory=True)  # a folder link out of d
    data = FT.dataset(d)  # rglob does not walk into the linked folder
    assert [i.file.name for i in data.items] == ["a.wav"]
    meta = tmp_path / "elsewhere.csv"
    meta.write_text("file_name,text\na.wav,x\n")
    (d / "metadata.csv").symlink_to(meta)
    with pytest.raises(DataError, match=r"^metadata.csv: 'metadata.csv' resolves to .*elsewhere"):
        FT.dataset(d)


def test_a_symlink_inside_the_folder_is_fine(tmp_path):
    d = _captioned(tmp_path / "d")
    (d / "b.wav").symlink_to(d / "a.wav")
    (d / "metadata.csv").write_text("file_name,text\na.wav,one\nb.wav,two\n")
    assert [i.text for i in FT.dataset(d).items] == ["one", "two"]


# ---------------------------------------------------------------------------- metadata text
def test_latin1_captions_are_named_by_file_and_line_and_skipped(tmp_path):
    d = _captioned(tmp_path / "d", ("a.wav", "b.wav"))
    (d / "metadata.csv").write_bytes("file_name,text\na.wav,ok\nb.wav,caf\xe9\n".encode("latin-1"))
    with pytest.warns(UserWarning) as rec:
        data = FT.dataset(d)
    assert [str(w.message) for w in rec] == [
        "skipping metadata.csv line 3: not UTF-8 text (save the file as UTF-8)",
        "skipping b.wav: no caption (give it a 'text' in the metadata, or a b.txt)",
    ]
    assert [i.file.name for i in data.items] == ["a.wav"]
    assert ("metadata.csv line 3", "not UTF-8 text (save the file as UTF-8)") in data.skipped
    with pytest.raises(DataError, match=r"^metadata.csv line 3: not UTF-8"):
        FT.dataset(d, strict=True)
    (d / "metadata.csv").unlink()
    (d / "metadata.jsonl").write_bytes(b'{"file_name": "a.wav", "text": "ok"}\n'
                                       b'{"file_name": "b.wav", "text": "caf\xe9"}\n')  # fmt: skip
    with pytest.warns(UserWarning) as rec:
        assert len(FT.dataset(d)) == 1
    assert str(rec[0].message).startswith("skipping metadata.jsonl line 2: not UTF-8")
    (d / "metadata.jsonl").unlink()
    (d / "a.txt").write_text("ok")
    (d / "b.txt").write_bytes(b"line one\ncaf\xe9")
    with pytest.warns(UserWarning, match=r"skipping b.txt: line 2 is not UTF-8 text \(byte 0xe9"):
        assert [i.file.name for i in FT.dataset(d).items] == ["a.wav"]


def test_excel_bom_is_accepted(tmp_path):
    d = _captioned(tmp_path / "d")
    (d / "metadata.csv").write_bytes(b"\xef\xbb\xbffile_name,text\r\na.wav,warm pad\r\n")
    assert [i.text for i in FT.dataset(d).items] == ["warm pad"]
    (d / "metadata.csv").unlink()
    (d / "metadata.jsonl").write_bytes(b'\xef\xbb\xbf{"file_name": "a.wav", "text": "x"}\n')
    assert [i.text for i in FT.dataset(d).items] == ["x"]


def test_rows_without_file_name_and_repeated_rows_are_named(tmp_path):
    d = _captioned(tmp_path / "d", ("a.wav", "b.wav"))
    (d / "metadata.jsonl").write_text(
        '{"file_name": "a.wav", "text": "x"}\n{"text": "lost"}\n[1, 2]\n'
        '{"file_name": "b.wav", "text": "y"}\n{"file_name": "a.wav", "text": "again"}\n'
    )
    with pytest.warns(UserWarning) as rec:
        data = FT.dataset(d)
    assert [(i.file.name, i.text) for i in data.items] == [("a.wav", "x"), ("b.wav", "y")]
    assert dict(data.skipped) == {
        "metadata.jsonl line 2": "no 'file_name' (each row needs 'file_name' and 'text')",
        "metadata.jsonl line 3": "no 'file_name' (each row needs 'file_name' and 'text')",
        "metadata.jsonl line 5": "'a.wav' is listed again (first on line 1); the first row is kept",
    }
    assert len(rec) == 3
    with pytest.raises(DataError, match=r"^metadata.jsonl line 2: no 'file_name'"):
        FT.dataset(d, strict=True)
    (d / "metadata.jsonl").unlink()
    (d / "metadata.csv").write_text("file_name,text\na.wav,x\nb.wav,y\na.wav,x\n")
    with pytest.raises(DataError, match=r"line 4: 'a.wav' is listed again \(first on line 2\)"):
        FT.dataset(d, strict=True)


# ---------------------------------------------------------------------------- audio checks
def test_nan_audio_is_invalid_not_silent(tmp_path):
    import soundfile as sf

    wav = np.full(48000, np.nan, dtype=np.float32)
    wav[:100] = 0.5
    sf.write(tmp_path / "nan.wav", wav, 32000, subtype="FLOAT")
    with pytest.raises(DataError, match=r"^nan.wav: invalid audio \(47900 samples are NaN or inf"):
        check_file(tmp_path, "nan.wav", "x", min_duration=1.0, silence_db=-60.0)


def test_too_long_is_named_with_the_limit_before_decoding(tmp_path):
    import soundfile as sf

    # A 3 h WAV header over a few real frames: the header alone decides, nothing is decoded.
    # A real 3 h WAV (16 kHz, 16 bit), stored as a sparse file: the header decides, and
    # nothing is decoded (decoding it would take 0.7 GB and minutes).
    sf.write(tmp_path / "long.wav", np.full(320, 1000, dtype=np.int16), 16000, subtype="PCM_16")
    raw = bytearray((tmp_path / "long.wav").read_bytes())
    size = 3 * 3600 * 16000 * 2
    i = raw.index(b"data")
    raw[i + 4 : i + 8] = size.to_bytes(4, "little")
    raw[4:8] = (i + size).to_bytes(4, "little")
    with open(tmp_path / "long.wav", "wb") as f:
        f.write(raw[: i + 8])
        f.truncate(i + 8 + size)
    with pytest.raises(DataError, match=r"^long.wav: too long \(10800 s; max_duration is 600 s"):
        check_file(tmp_path, "long.wav", "x", min_duration=1.0, silence_db=-60.0)
    _write(tmp_path / "mid.wav", seconds=3.0)
    with pytest.raises(DataError, match=r"^mid.wav: too long \(3 s; max_duration is 2 s"):
        check_file(tmp_path, "mid.wav", "x", min_duration=1.0, silence_db=-60.0, max_duration=2.0)


def test_the_same_file_spelled_two_ways_is_one_row(tmp_path):
    d = _captioned(tmp_path / "d", ("a.wav", "b.wav"))
    (d / "metadata.csv").write_text("file_name,text\na.wav,x\n./a.wav,again\nb.wav,y\n")
    layout, captions, missing, bad = read_captions(d)
    assert captions == {"a.wav": "x", "b.wav": "y"} and missing == []
    assert bad == [("metadata.csv line 3", "'a.wav' is listed again (first on line 2); the "
                                           "first row is kept")]  # fmt: skip


def test_a_nul_in_a_file_name_is_named_by_file_and_line(tmp_path):
    d = _captioned(tmp_path / "d", ("a.wav",))
    (d / "metadata.jsonl").write_text('{"file_name": "a.wav", "text": "x"}\n'
                                      '{"file_name": "b\\u0000.wav", "text": "y"}\n')  # fmt: skip
    with pytest.raises(DataError, match=r"^metadata.jsonl line 2: 'b\\x00.wav' is not a file name"):
        read_captions(d)
