import threading

import numpy as np
import pytest
from _uploads import wav_bytes

import musicgen_nb as mg
from musicgen_nb.ui import Studio


def test_params_follow_the_controls(st):
    st.guidance.value = 4.5
    st.top_k.value = 100
    st.negative.value = "  drums "
    p = st.params()
    assert p["prompt"] == "lo-fi beat" and p["negative_prompt"] == "drums"
    assert p["guidance_scale"] == 4.5 and p["top_k"] == 100 and p["duration"] == 1.0


def test_generate_adds_a_history_row_and_fills_the_player(st):
    g = st.generate(wait=True)
    assert st.last_error is None
    assert isinstance(g, mg.Generation) and g.audio.shape == (1, 1, 32000)
    assert len(st.history) == 1
    row = st.history.iloc[0]
    assert row["prompt"] == "lo-fi beat" and row["seed"] == g.seed and not row["stopped"]
    assert st.seed.value == g.seed
    assert st.player.frames == 50 and st.player.audio_url.startswith("data:audio/")
    assert "lo-fi beat" in st.history_html.value
    assert not st.generate_button.disabled and st.stop_button.disabled
    assert st.progress.value == st.progress.max == 53


def test_locked_seed_and_rerun_reproduce(st):
    st.lock.value = True
    st.seed.value = 1234
    a = st.generate(wait=True)
    assert a.seed == 1234
    b = st.rerun(1, wait=True)
    np.testing.assert_array_equal(a.codes, b.codes)
    assert list(st.history["seed"]) == [1234, 1234]


def test_unlocked_seed_changes_each_run(st):
    a = st.generate(wait=True)
    b = st.generate(wait=True)
    assert a.seed != b.seed


def test_double_click_starts_one_run(st):
    st.duration.value = 2.0
    st.generate_button.click()
    st.generate_button.click()  # ignored: a run is in flight
    assert st.generate_button.disabled
    st.wait()
    assert len(st.history) == 1


def test_stop_keeps_the_partial_result(st):
    st.duration.value = 4.0
    started = threading.Event()
    original = st._progress

    def progress(done, total):
        original(done, total)
        if done == 20:
            started.set()
            st.stop_button.click()

    st._progress = progress
    st.generate()
    st.wait()
    assert started.is_set()
    g = st.generations[-1]
    assert g.interrupted and 0 < g.codes.shape[-1] < 200
    assert bool(st.history.iloc[-1]["stopped"]) and "stopped" in st.message.value


def test_bad_parameter_shows_one_message_and_panel_stays_usable(st):
    st.duration.value = 0.5
    st.prompt.value = "x"
    st.model.value = "tiny"
    bad = st.generate(params={"top_p": 2.0}, wait=True)
    assert bad is None and "top_p must be in [0, 1]" in st.last_error
    assert "top_p" in st.message.value and not st.generate_button.disabled
    assert st.generate(wait=True) is not None and st.message.value == ""


def test_bad_upload_is_refused_with_one_message(st):
    assert st.set_upload("audio_prompt", "noise.wav", b"not audio at all") is False
    assert "noise.wav: could not read audio" in st.message.value
    assert st.uploads["audio_prompt"] is None
    assert st.set_upload("audio_prompt", "song.txt", b"abc") is False
    assert "unsupported file type .txt" in st.last_error
    assert st.generate(wait=True) is not None  # still usable


def test_audio_prompt_upload_continues_the_clip(st):
    assert st.set_upload("audio_prompt", "clip.wav", wav_bytes(0.5, 16000)) is True
    g = st.generate(wait=True)
    assert g.prompt_frames == 25 and g.codes.shape[-1] == 75


def test_melody_upload_only_for_melody_checkpoints(tiny, tiny_melody, tmp_path):
    st = mg.studio(tiny, display=False)
    assert st.melody_upload.disabled
    assert st.set_upload("melody", "tune.wav", wav_bytes()) is False
    assert "needs a melody checkpoint" in st.last_error
    sm = mg.studio(tiny_melody, display=False)
    assert not sm.melody_upload.disabled
    assert sm.set_upload("melody", "tune.wav", wav_bytes(1.0, 32000, channels=2))
    sm.duration.value = 1.0
    g = sm.generate(wait=True)
    assert g.params["melody"] is True


def test_model_change_loads_in_the_background_and_updates_the_melody_switch(tiny, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    st = Studio(tiny)
    assert "loaded · cpu · float32" in st.status.value
    st.model.value = "tiny-melody"
    assert not st.melody_upload.disabled
    st.wait()
    assert "loaded · cpu · float32" in st.status.value and st.last_error is None
    assert set(st._sessions) == {"tiny", "tiny-melody"} and not st.generate_button.disabled
    st.model.value = "small"  # not available offline: the error shows, the panel stays usable
    assert st.melody_upload.disabled
    st.wait()
    assert "could not load small" in st.status.value
    assert "ModelUnavailableError" in st.message.value and not st.generate_button.disabled
    assert set(st._sessions) == {"tiny"}  # the studio's own loads do not pile up
    st.model.value = "tiny"
    assert "loaded" in st.status.value


def test_model_change_is_lazy_while_a_run_is_in_flight(tiny, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    st = Studio(tiny)
    st.duration.value = 2.0
    assert st.generate() is True
    st.model.value = "tiny-melody"  # a run is in flight: loads on the next Generate
    assert st.load_model() is False
    st.wait()
    assert "not loaded yet" in st.status.value
    assert st.history.iloc[-1]["model"] == "tiny"


def test_unavailable_model_shows_the_error(st, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    st.model.value = "small"
    st.wait()  # the load on change fails: one message
    assert "ModelUnavailableError" in st.last_error
    assert st.generate(wait=True) is None  # and so does a Generate
    assert "ModelUnavailableError" in st.last_error and "tiny" in st.last_error
    assert not st.generate_button.disabled


def test_no_accordion_in_the_panel(st):
    """Colab's widget manager breaks Accordion: the panel holds none (nor Tab)."""

    def walk(w):
        yield w
        for child in getattr(w, "children", ()):
            yield from walk(child)

    kinds = {type(w).__name__ for w in walk(st.panel)}
    assert "ToggleButton" in kinds and "Output" in kinds
    assert not kinds & {"Accordion", "Tab", "Stack"}, kinds


def test_generate_now_with_overrides(st):
    st.lock.value = True
    st.seed.value = 7
    g = st.generate_now(duration=0.5)
    assert g.seed == 7 and g.audio.shape[-1] == 16000
    assert st.generate_now(seed=8).seed == 8


def test_progress_shows_the_steps(st):
    st.generate(wait=True)
    assert "step 53 / 53" in st.progress_text.value


def test_mimebundle_without_a_browser(st):
    """ipywidgets 8 has the panel's own bundle; ipywidgets 7 (Colab) gets one from the model id."""
    bundle = st._repr_mimebundle_()
    data = bundle[0] if isinstance(bundle, tuple) else bundle
    view = data["application/vnd.jupyter.widget-view+json"]
    assert view["model_id"] == st.panel.model_id and view["version_major"] == 2
    assert data["text/plain"].startswith("VBox(")
    assert "mgnb-studio" in st.panel._dom_classes


def _icons(widget):
    yield getattr(widget, "icon", "")
    for child in getattr(widget, "children", ()):
        yield from _icons(child)


def _font_awesome_sheets():
    """Font Awesome CSS of the front ends installed here: classic Notebook 6 ships
    Font Awesome 4.7, JupyterLab 4 bundles 5.x (as in ipywidgets 8)."""
    import importlib.util
    import sys
    from pathlib import Path

    sheets = {}
    for package in ("notebook", "nbclassic"):  # Notebook 6.5 keeps its static files in nbclassic
        spec = importlib.util.find_spec(package)
        if spec is None or spec.origin is None:
            continue
        fa4 = Path(spec.origin).parent / "static/components/font-awesome/css/font-awesome.css"
        if fa4.is_file():
            sheets["Font Awesome 4 (classic Notebook)"] = fa4.read_text(encoding="utf-8")
    lab = Path(sys.prefix) / "share/jupyter/lab/static"
    for js in sorted(lab.glob("*.js")) if lab.is_dir() else ():
        text = js.read_text(encoding="utf-8", errors="replace")
        if "Font Awesome Free 5" in text:
            sheets["Font Awesome 5 (JupyterLab)"] = text
            break
    return sheets


def test_icons_exist_in_font_awesome_4_and_5(st):
    """ipywidgets 7 draws icons with Font Awesome 4, ipywidgets 8 with 5+: use names in both."""
    icons = {i for i in _icons(st.panel) if i}
    assert {"history", "play", "stop", "random"} <= icons
    sheets = _font_awesome_sheets()
    if not sheets:
        pytest.skip("no front end with Font Awesome CSS is installed")
    for name, css in sheets.items():
        missing = sorted(i for i in icons if f".fa-{i}:before" not in css)
        assert not missing, f"{name} has no icon {missing}"


def test_bad_model_argument():
    with pytest.raises(TypeError, match="model_or_session must be"):
        Studio(3.5)


def test_studio_as_the_last_line_of_a_cell_shows_one_panel(tiny):
    # mg.studio(...) displayed the panel, and the cell's result (the Studio) displayed it again.
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    shell = InteractiveShell.instance()
    shell.user_ns.update(mg=mg, tiny=tiny)
    # store_history=False: cells that do not move the execution count (which it keyed on)
    for history in (True, False):
        shown = {}
        for cell in [
            "mg.studio(tiny)",
            "x = mg.studio(tiny)",
            "x",
            "mg.studio(tiny, display=False)",
        ]:
            with capture_output() as cap:
                assert shell.run_cell(cell, store_history=history).success
            shown[cell] = len(cap.outputs)
        assert shown == {
            "mg.studio(tiny)": 1, "x = mg.studio(tiny)": 1, "x": 1,  # shown again on request
            "mg.studio(tiny, display=False)": 1,  # the Studio as the cell's result
        }, history  # fmt: skip
        assert all("application/vnd.jupyter.widget-view+json" in o.data for o in cap.outputs)
    assert not shell.events.callbacks["post_run_cell"] or all(
        "clear" not in getattr(f, "__qualname__", "")
        for f in shell.events.callbacks["post_run_cell"]
    )  # each handler ran once and went
