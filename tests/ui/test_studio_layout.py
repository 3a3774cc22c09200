from types import SimpleNamespace

import ipywidgets as W

from musicgen_nb.players import LivePlayer
from musicgen_nb.ui import SyncedPlayer
from musicgen_nb.ui.studio_layout import (
    HISTORY_COLUMNS,
    controls,
    error_html,
    history_table,
    panel,
    section,
    status_html,
    uploads_note_html,
)


def _walk(w):
    yield w
    for child in getattr(w, "children", ()):
        yield from _walk(child)


def test_controls_hold_every_widget_once_and_the_panel_shows_them():
    w = controls("my-model", ["tiny", "my-model"], SyncedPlayer, LivePlayer)
    assert w["model"].options == ("my-model", "tiny") and w["model"].value == "my-model"
    assert isinstance(w["player"], SyncedPlayer) and isinstance(w["live"], LivePlayer)
    assert w["live"].layout.display == "none" and w["figures"].layout.display == "none"
    assert all(w[b].disabled for b in ("stop_button", "replay_button", "rerun_button"))
    box = panel(SimpleNamespace(**w))
    shown = {id(x) for x in _walk(box)}
    missing = [name for name, widget in w.items() if id(widget) not in shown]
    assert not missing, missing
    assert "mgnb-studio" in box._dom_classes


def test_the_panel_boxes_have_their_own_layouts():
    box = panel(SimpleNamespace(**controls("tiny", [], SyncedPlayer, LivePlayer)))
    layouts = [x.layout for x in _walk(box) if isinstance(x, W.Box)]
    assert len({id(lay) for lay in layouts if lay.align_items == "center"}) == 3


def test_section_escapes_its_title():
    assert "a &lt;b&gt;" in section("a <b>").value


def test_status_html():
    session = SimpleNamespace(dtype="torch.float32", device=SimpleNamespace(type="cpu"),
                              max_duration=30.0)  # fmt: skip
    assert "loaded · cpu · float32 · up to 30 s" in status_html(session)
    assert "#1b6e20" in status_html(session)
    assert "not loaded yet" in status_html(None)
    assert "#a4001d" in status_html(None, "could not load x")
    assert "loading &lt;x&gt;..." in status_html(None, "loading <x>...")


def test_uploads_note_html():
    empty = {"audio_prompt": None, "melody": None}
    assert "melody needs a melody checkpoint" in uploads_note_html(empty, True)
    assert "melody needs" not in uploads_note_html(empty, False)
    held = uploads_note_html({"audio_prompt": ("<a>.wav", None, 1), "melody": None}, True)
    assert "audio prompt: &lt;a&gt;.wav" in held and "up to" not in held


def test_error_html_is_escaped():
    assert "&lt;script&gt;" in error_html("<script>") and "<script>" not in error_html("<script>")


def test_history_table_newest_first_and_escaped():
    assert "no runs yet" in history_table([])
    rows = [
        dict(run=1, prompt="<b>old</b>", model="tiny", duration=1.0, guidance=3.0,
             temperature=1.0, top_k=250, top_p=0.0, seed=1, seconds=1.234, stopped=False,
             time="10:00:00"),
        dict(run=2, prompt="", model="tiny", duration=1.0, guidance=3.0, temperature=1.0,
             top_k=250, top_p=0.0, seed=2, seconds=2.0, stopped=True, time="10:01:00"),
    ]  # fmt: skip
    html = history_table(rows)
    assert html.index("(unconditional)") < html.index("&lt;b&gt;old&lt;/b&gt;")
    assert "<b>old</b>" not in html and "1.2 s" in html and "(stopped)" in html
    assert html.count("<th style") == len(HISTORY_COLUMNS)
    long = history_table([dict(rows[0], prompt="x" * 50)])
    assert "x" * 35 + "…" in long and f"title='{'x' * 50}'" in long
