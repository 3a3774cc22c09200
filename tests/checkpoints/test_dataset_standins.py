"""Dataset stand-ins: datasets.load_dataset(hub id) returns a local or synthetic audio set."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from musicgen_nb.checkpoints import dataset_standins as ds


@pytest.fixture
def clips(tmp_path):
    folder = tmp_path / "clips"
    folder.mkdir()
    for i, name in enumerate(["a.wav", "b.flac"]):
        sf.write(folder / name, np.full(800, 0.1 * (i + 1), np.float32), 8000)
    (folder / "metadata.csv").write_text("\ufefffile_name,genre\na.wav,rock\nb.flac,jazz\n")
    return folder


@pytest.fixture
def mapped(monkeypatch, clips):
    table = ds.parse_table(
        ["org/synth = synthetic n=3 seconds=0.5 sampling_rate=22050 genre=blues,rock",
         "org/local = clips"], root=clips.parent,
    )  # fmt: skip
    monkeypatch.setenv(ds.ENV, json.dumps(table))
    monkeypatch.setenv("MUSICGEN_NB_STANDIN", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a stand-in never needs the hub
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr("datasets.config.HF_HUB_OFFLINE", True)  # read at datasets' import
    monkeypatch.setattr("datasets.config.HF_DATASETS_OFFLINE", True, raising=False)
    ds.patch_datasets()


def test_load_dataset_streaming_like_the_hf_notebook(mapped):
    from datasets import load_dataset

    dataset = load_dataset("org/synth", split="train", streaming=True)
    sample = next(iter(dataset))
    assert sample["audio"]["array"].shape == (11025,) and sample["audio"]["sampling_rate"] == 22050
    assert [r["genre"] for r in dataset] == ["blues", "rock", "blues"]


def test_rows_have_the_types_a_hub_set_gives(mapped):
    """int sampling rates and str labels (not 0-d arrays or np.str_), float32 numpy audio."""
    from datasets import load_dataset

    for row in (load_dataset("org/synth", split="train")[0],
                next(iter(load_dataset("org/synth", split="train", streaming=True)))):  # fmt: skip
        assert type(row["audio"]["sampling_rate"]) is int and type(row["genre"]) is str
        assert isinstance(row["audio"]["array"], np.ndarray)
        assert row["audio"]["array"].dtype == np.float32


def test_no_split_gives_a_dict_and_folders_keep_labels(mapped):
    import datasets

    whole = datasets.load_dataset("org/local")
    assert list(whole) == ["train"] and len(whole["train"]) == 2
    rows = list(whole["train"])
    assert [r["genre"] for r in rows] == ["rock", "jazz"]
    assert np.allclose(rows[1]["audio"]["array"], 0.2, atol=1e-3)
    with pytest.raises(ValueError, match="one split, 'train'"):
        datasets.load_dataset("org/local", split="test")


def test_unmapped_ids_and_standins_off_go_to_datasets(mapped, monkeypatch, tmp_path):
    import datasets

    (tmp_path / "x.csv").write_text("a\n1\n")
    got = datasets.load_dataset("csv", data_files=str(tmp_path / "x.csv"), split="train")
    assert got[0]["a"] == 1  # datasets' own loader, untouched
    monkeypatch.setenv("MUSICGEN_NB_STANDIN", "0")
    with pytest.raises(ConnectionError, match="Couldn't reach 'org/synth' on the Hub"):
        datasets.load_dataset("org/synth", split="train")  # datasets' own offline error


@pytest.mark.parametrize(
    "line, match",
    [
        ("no-equals-sign", "must read 'HUB_ID = FOLDER'"),
        ("a/b = nowhere", "which is no folder"),
        ("a/b = synthetic n=x", "n='x' must be a number"),
        ("a/b = synthetic seconds=0", "out of range"),
        ("a/b = synthetic genre", "is not KEY=VALUE"),
    ],
)
def test_bad_table_lines_name_the_line(tmp_path, line, match):
    with pytest.raises(ValueError, match=f"ini, line 1: .*{match}|{match}"):
        ds.parse_table([line], root=tmp_path)


def test_bad_environment_value(monkeypatch):
    monkeypatch.setenv(ds.ENV, "[1]")
    with pytest.raises(ValueError, match="MUSICGEN_NB_STANDIN_DATASETS must hold a JSON object"):
        ds.table()


def test_missing_datasets_is_said_clearly(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(ImportError, match=r"pip install \"musicgen-nb\[datasets\]\""):
        ds.require_datasets()
