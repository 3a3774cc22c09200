import threading
from types import SimpleNamespace

import numpy as np
import pytest
from _uploads import wav_bytes

from musicgen_nb.ui import run
from musicgen_nb.ui.studio_run import (
    RECORD_PARAMS,
    Background,
    figures,
    is_melody_name,
    read_upload,
    record,
    upload_kwargs,
)


def test_run_is_a_plain_function(tiny):
    g = run(tiny, dict(prompt="", negative_prompt="", duration=0.5, guidance_scale=1.0, temperature=1.0,
                       top_k=0, top_p=0.0, seed=3, model="tiny"))  # fmt: skip
    assert g.prompts == [None] and g.seed == 3


def test_run_streams_into_a_live_player(tiny):
    from musicgen_nb.players import LivePlayer

    p = dict(prompt="jazz", negative_prompt="drums", duration=0.5, guidance_scale=3.0,
             temperature=1.0, top_k=250, top_p=0.0, seed=4, model="tiny")  # fmt: skip
    live = LivePlayer(show_final=False)
    g = run(tiny, p, player=live)
    assert g.seed == 4 and g.audio.shape == (1, 1, 16000)
    assert g.params["negative_prompt"] == ["drums"]  # kept: guidance is on
    plain = run(tiny, dict(p, guidance_scale=1.0))
    assert plain.params.get("negative_prompt") is None  # dropped without guidance


def test_is_melody_name():
    assert is_melody_name("tiny-melody") and is_melody_name("facebook/musicgen-melody")
    assert is_melody_name("my-melody-finetune")  # by name, for checkpoints we do not know
    assert not is_melody_name("tiny") and not is_melody_name("facebook/musicgen-small")


def test_upload_kwargs_keeps_the_melody_for_melody_models_only():
    audio = np.zeros((1, 8), dtype=np.float32)
    none = {"audio_prompt": None, "melody": None}
    assert upload_kwargs(none, True) == {}
    both = {"audio_prompt": ("a.wav", audio, 8000), "melody": ("m.wav", audio, 16000)}
    kw = upload_kwargs(both, True)
    assert kw["audio_prompt_sr"] == 8000 and kw["melody_sr"] == 16000
    assert kw["audio_prompt"] is audio and kw["melody"] is audio
    assert sorted(upload_kwargs(both, False)) == ["audio_prompt", "audio_prompt_sr"]


def test_record_and_its_rerun_parameters():
    p = dict(model="tiny", prompt="x", negative_prompt="y", duration=1.0, guidance_scale=3.0,
             temperature=0.9, top_k=10, top_p=0.5)  # fmt: skip
    r = record(3, p, SimpleNamespace(seed=11, interrupted=True), 1.234)
    assert r["run"] == 3 and r["seed"] == 11 and r["stopped"] and r["seconds"] == 1.23
    assert r["negative"] == "y" and r["guidance"] == 3.0
    again = {param: r[key] for key, param in RECORD_PARAMS.items()}
    assert again == dict(p, seed=11)


def test_read_upload():
    name, audio, sr = read_upload("audio_prompt", "clip.wav", wav_bytes(0.25, 8000), "tiny")
    assert name == "clip.wav" and audio.shape == (1, 2000) and sr == 8000
    assert read_upload("melody", "t.wav", wav_bytes(), "tiny-melody")[0] == "t.wav"
    with pytest.raises(ValueError, match="t.wav: melody conditioning needs a melody checkpoint"):
        read_upload("melody", "t.wav", wav_bytes(), "tiny")
    with pytest.raises(ValueError, match="unsupported file type .txt"):
        read_upload("audio_prompt", "a.txt", b"abc", "tiny")


def test_background_runs_one_job_at_a_time():
    jobs = Background()
    release, order = threading.Event(), []
    assert not jobs.running
    assert jobs.start(release.wait, 5, before=lambda: order.append("before"),
                      after=lambda: order.append("after"))  # fmt: skip
    assert jobs.running and not jobs.start(order.append, "second")
    release.set()
    jobs.wait()
    assert not jobs.running and order == ["before", "after"]
    jobs.stop.set()
    assert jobs.start(lambda: order.append(jobs.stop.is_set()))  # the stop flag is cleared
    jobs.wait()
    assert order[-1] is False


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_background_calls_after_even_on_an_error():
    jobs, done = Background(), []

    def boom():
        raise RuntimeError("x")

    jobs.start(boom, after=lambda: done.append(True))
    jobs.wait()
    assert done == [True]


def test_figures_of_a_generation(tiny):
    g = tiny.generate("jazz", duration=0.5, seed=0, progress=False)
    grid, spec = figures(g)
    assert grid.data[0].z.shape == (4, 25)
    assert spec.layout.yaxis.type == "log"
