"""The work of one batch, shared by both backends: what each row's result holds."""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pytest
import soundfile as sf
import torch

import musicgen_nb as mg
from musicgen_nb.grids.batch import (
    GridInterrupted,
    adapter_of,
    encode_audio,
    fixed_decode,
    generate_batch,
)


def test_melody_rows_are_batched_by_prompt_length(tiny_melody, tmp_path):
    g = mg.grid(["jazz", "epic orchestral choir with a long name"], seed=[1], duration=0.5)
    m = mg.run_grid(g, model=tiny_melody, out=tmp_path, batch_size=4, progress=False)
    assert m["batch_size"].tolist() == [1, 1]
    alone = tiny_melody.generate(g["prompt"][1], seed=1, duration=0.5, progress=False)
    assert hashlib.sha256(alone.codes[0].tobytes()).hexdigest() == m["codes_sha256"][1]


def test_generate_batch_gives_each_row_its_file_and_record(tiny):
    rows = mg.grid(["jazz", "rock"], seed=[3], duration=0.5).to_dict("records")
    out = generate_batch(tiny, rows, "flac")
    assert [r["clip_id"] for r in out] == [r["clip_id"] for r in rows]
    assert {r["batch_size"] for r in out} == {2} and {r["device"] for r in out} == {"cpu"}
    alone = tiny.generate("rock", seed=3, duration=0.5, progress=False)
    assert out[1]["codes_sha256"] == hashlib.sha256(alone.codes[0].tobytes()).hexdigest()
    wav, sr = sf.read(io.BytesIO(out[1]["data"]), dtype="float32", always_2d=True)
    assert sr == 32000 and out[1]["duration_s"] == 0.5
    np.testing.assert_allclose(wav.T, alone.audio[0], atol=1 / 32767)


def test_encode_audio_clips_to_16_bit():
    data = encode_audio(np.array([[2.0, -2.0, 0.5]], np.float32), 8000, "wav")
    wav, sr = sf.read(io.BytesIO(data), dtype="int16")
    assert sr == 8000 and wav.tolist() == [32767, -32768, 16384]
    assert sf.info(io.BytesIO(data)).subtype == "PCM_16"


def test_files_do_not_depend_on_the_thread_count(tiny):
    """EnCodec rounds differently with 1 and 2 threads; the files are decoded with a fixed count."""
    rows = mg.grid(["jazz", "rock"], seed=[3], duration=1.0).to_dict("records")
    threads = torch.get_num_threads()
    try:
        out = {}
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            g = tiny.generate(["jazz"], seed=[3], duration=1.0, progress=False)
            out[n] = (
                generate_batch(tiny, rows, "wav"),
                tiny.decode(g.codes),
                fixed_decode(tiny, g),
            )
    finally:
        torch.set_num_threads(threads)
    for n in (2, 3):
        assert [r["data"] for r in out[n][0]] == [r["data"] for r in out[1][0]]
        assert np.array_equal(out[n][2], out[1][2])
    g = tiny.generate(["jazz", "rock"], seed=[3, 4], duration=1.0, progress=False)  # 1 thread
    assert out[3][0][0]["data"] == encode_audio(g.audio[0], 32000, "wav")  # the same decode
    if np.array_equal(out[1][1], out[2][1]):
        pytest.skip("the plain decode is the same with 1 and 2 threads here: nothing to pin")


def test_long_clips_in_windows_are_pinned_too(tiny):
    """4 s is the longest single window of tiny: 6 s runs in 2 windows (the step count spans both)."""
    rows = mg.grid(["jazz"], seed=[3], duration=6.0, extend_stride=2.0).to_dict("records")
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(3)
        got = generate_batch(tiny, rows, "wav")[0]["data"]
        assert torch.get_num_threads() == 3  # restored
        torch.set_num_threads(1)
        want = generate_batch(tiny, rows, "wav")[0]["data"]
    finally:
        torch.set_num_threads(threads)
    assert got == want


def test_an_interrupted_batch_returns_nothing(tiny):
    import threading

    stop = threading.Event()
    stop.set()
    rows = mg.grid(["jazz"], seed=[1], duration=0.5).to_dict("records")
    with pytest.raises(
        GridInterrupted,
        match=r"interrupted while generating 1 clip\(s\) \(0\.00 of 0\.5 s\): not saved",
    ):
        generate_batch(tiny, rows, "wav", stop=stop)


def test_each_result_says_which_model_made_it(tiny):
    res = generate_batch(tiny, mg.grid(["jazz"], seed=[1], duration=0.5).to_dict("records"))[0]
    assert (res["model"], res["standin"], res["precision"], res["adapter"]) == (
        "tiny",
        None,
        "fp32",
        None,
    )
    assert adapter_of(tiny) is None
