"""The studio's widgets, its panel layout and the HTML snippets it shows.

Plain builders: each returns a dict of named widgets (the names become the
:class:`~musicgen_nb.ui.studio.Studio` attributes tests and scripts use), or
an HTML string. Wiring controls to actions stays in the studio.
"""

from __future__ import annotations

import ipywidgets as W

from ._util import MAX_UPLOAD_BYTES, UPLOAD_TYPES, escape

STYLE = {"description_width": "84px"}
#: History columns: record key -> table header.
HISTORY_COLUMNS = {"run": "#", "prompt": "prompt", "model": "model", "duration": "sec",
                   "guidance": "cfg", "temperature": "temp", "top_k": "top-k", "top_p": "top-p",
                   "seed": "seed", "seconds": "took", "time": "time"}  # fmt: skip


def prompt_controls(name: str, models) -> dict:
    """The model dropdown, its status line and the prompt boxes.

    Examples
    --------
    >>> sorted(prompt_controls("tiny", ["tiny", "small"]))
    ['model', 'negative', 'prompt', 'status']
    """
    return dict(
        model=W.Dropdown(
            options=list(dict.fromkeys([name, *models])),
            value=name,
            description="model",
            style=STYLE,
            layout=W.Layout(width="300px"),
        ),  # fmt: skip
        status=W.HTML(value="", layout=W.Layout(margin="0 0 0 8px")),
        prompt=W.Textarea(
            value="lo-fi hip hop beat with mellow piano",
            placeholder="describe the music",
            description="prompt",
            layout=W.Layout(width="auto", height="64px"),
            style=STYLE,
        ),  # fmt: skip
        negative=W.Textarea(
            value="",
            placeholder="what to steer away from (optional, needs guidance > 1)",
            description="negative",
            layout=W.Layout(width="auto", height="36px"),
            style=STYLE,
        ),  # fmt: skip
    )


def sampling_controls() -> dict:
    """Sliders of the sampling parameters, the seed box and its lock and dice.

    Examples
    --------
    >>> sampling_controls()["top_k"].value
    250
    """
    auto = W.Layout(width="auto")
    slider = dict(continuous_update=False, style=STYLE, layout=auto)
    return dict(
        duration=W.FloatSlider(value=8.0, min=0.5, max=60.0, step=0.5, description="duration (s)",
                               **slider),
        guidance=W.FloatSlider(value=3.0, min=1.0, max=10.0, step=0.5, description="guidance",
                               **slider),
        temperature=W.FloatSlider(value=1.0, min=0.1, max=2.0, step=0.05,
                                  description="temperature", **slider),
        top_k=W.IntSlider(value=250, min=0, max=1000, step=10, description="top-k", **slider),
        top_p=W.FloatSlider(value=0.0, min=0.0, max=1.0, step=0.05, description="top-p", **slider),
        seed=W.IntText(value=0, description="seed", style=STYLE, layout=W.Layout(width="220px")),
        lock=W.ToggleButton(value=False, description="lock", icon="lock",
                            tooltip="keep this seed for the next runs", layout=auto),
        dice=W.Button(description="", icon="random", tooltip="draw a random seed",
                      layout=W.Layout(width="40px")),
    )  # fmt: skip


def upload_controls() -> dict:
    """The two file uploads (audio prompt, melody), their clear button and note.

    Examples
    --------
    >>> upload_controls()["melody_upload"].description
    'melody'
    """
    auto = W.Layout(width="auto")
    accept = ",".join(UPLOAD_TYPES)
    return dict(
        audio_upload=W.FileUpload(accept=accept, multiple=False, description="audio prompt",
                                  layout=auto),
        melody_upload=W.FileUpload(accept=accept, multiple=False, description="melody",
                                   layout=auto),
        clear_button=W.Button(description="clear", icon="times", tooltip="forget both uploads",
                              layout=auto),
        uploads_note=W.HTML(value=""),
    )  # fmt: skip


def action_controls() -> dict:
    """Generate and Stop, the progress bar and its text, and the message line.

    Examples
    --------
    >>> action_controls()["stop_button"].disabled
    True
    """
    return dict(
        generate_button=W.Button(description="Generate", button_style="primary", icon="play",
                                 layout=W.Layout(width="130px")),
        stop_button=W.Button(description="Stop", button_style="warning", icon="stop",
                             disabled=True, layout=W.Layout(width="100px")),
        progress=W.IntProgress(value=0, min=0, max=1, description="",
                               layout=W.Layout(width="auto", flex="1 1 auto")),
        progress_text=W.HTML(value="", layout=W.Layout(width="130px")),
        message=W.HTML(value=""),
    )  # fmt: skip


def output_widgets(synced_player, live_player) -> dict:
    """The players and the figures area, given the two player widget classes.

    A toggle button and an Output, not an Accordion: Colab's widget manager
    breaks Accordion.

    Examples
    --------
    >>> from musicgen_nb.players import LivePlayer
    >>> from musicgen_nb.ui import SyncedPlayer
    >>> sorted(output_widgets(SyncedPlayer, LivePlayer))
    ['figures', 'figures_box', 'figures_button', 'live', 'player']
    """
    button = W.ToggleButton(
        value=False, description="plotly figures: token grid and spectrogram", icon="eye",
        tooltip="show or hide the figures of the run in the player", layout=W.Layout(width="auto"),
    )  # fmt: skip
    figures = W.Output(layout=W.Layout(width="100%", display="none"))
    return dict(
        player=synced_player(),
        live=live_player(show_final=False, layout=W.Layout(display="none")),  # plays as it runs
        figures_button=button,
        figures=figures,
        figures_box=W.VBox([button, figures]),
    )


def history_controls() -> dict:
    """The history table and the run picker with Replay, Re-run and Save.

    Examples
    --------
    >>> history_controls()["save_button"].disabled
    True
    """
    auto = W.Layout(width="auto")
    return dict(
        history_html=W.HTML(value=history_table([]), layout=W.Layout(overflow="auto")),
        run_picker=W.Dropdown(options=[], description="run",
                              style={"description_width": "32px"}, layout=W.Layout(width="130px")),
        replay_button=W.Button(description="Replay", icon="play-circle", disabled=True,
                               layout=auto),
        rerun_button=W.Button(description="Re-run same seed", icon="history", disabled=True,
                              layout=auto),
        save_button=W.Button(description="Save", icon="save", disabled=True, layout=auto),
    )  # fmt: skip


def controls(name: str, models, synced_player, live_player) -> dict:
    """Every widget of the studio by attribute name (see the builders above).

    Examples
    --------
    >>> from musicgen_nb.players import LivePlayer
    >>> from musicgen_nb.ui import SyncedPlayer
    >>> w = controls("tiny", ["tiny"], SyncedPlayer, LivePlayer)
    >>> w["model"].value, w["generate_button"].description
    ('tiny', 'Generate')
    """
    return {
        **prompt_controls(name, models),
        **sampling_controls(),
        **upload_controls(),
        **action_controls(),
        **output_widgets(synced_player, live_player),
        **history_controls(),
    }


def section(title: str) -> W.HTML:
    """A small upper-case section heading.

    Examples
    --------
    >>> "PROMPT" in section("prompt").value.upper()
    True
    """
    return W.HTML(
        value=f"<div style='font-size:11px;font-weight:600;letter-spacing:.06em;color:#777;"
        f"text-transform:uppercase;margin:6px 0 0 2px'>{escape(title)}</div>"
    )


def panel(w) -> W.VBox:
    """The studio panel: ``w`` holds the widgets of :func:`controls` as attributes.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> from musicgen_nb.players import LivePlayer
    >>> from musicgen_nb.ui import SyncedPlayer
    >>> w = SimpleNamespace(**controls("tiny", ["tiny"], SyncedPlayer, LivePlayer))
    >>> panel(w)._dom_classes
    ('mgnb-studio',)
    """

    def column():
        return W.Layout(width="50%", padding="0 8px 0 0")

    def centred():
        return W.Layout(align_items="center")

    header = W.HTML(
        value="<div style='font-size:16px;font-weight:600'>musicgen-nb studio</div>",
        layout=W.Layout(margin="0 16px 0 0"),
    )
    top = W.HBox([header, w.model, w.status], layout=centred())
    knobs = W.HBox([
        W.VBox([w.duration, w.guidance, w.temperature], layout=column()),
        W.VBox([w.top_k, w.top_p, W.HBox([w.seed, w.lock, w.dice])], layout=column()),
    ])  # fmt: skip
    uploads = W.HBox([w.audio_upload, w.melody_upload, w.clear_button, w.uploads_note],
                     layout=centred())  # fmt: skip
    actions = W.HBox([w.generate_button, w.stop_button, w.progress, w.progress_text],
                     layout=centred())  # fmt: skip
    history = W.VBox([
        w.history_html, W.HBox([w.run_picker, w.replay_button, w.rerun_button, w.save_button]),
    ])  # fmt: skip
    box = W.VBox(
        [top, section("prompt"), w.prompt, w.negative, section("sampling"), knobs,
         section("conditioning audio"), uploads, actions, w.message, section("output"),
         w.live, w.player, w.figures_box, section("history"), history],
        layout=W.Layout(border="1px solid #d0d0d0", padding="10px 12px", width="auto",
                        max_width="980px"),
    )  # fmt: skip
    box.add_class("mgnb-studio")
    return box


def status_html(session, note: str = "") -> str:
    """The status line of a model: ``note`` if given, else loaded or not (``session`` None).

    Examples
    --------
    >>> "not loaded yet" in status_html(None)
    True
    """
    colour = "#888"
    if note:
        text = note
        colour = "#a4001d" if note.startswith("could not") else "#8a5a00"
    elif session is None:
        text = "not loaded yet (loads on first Generate)"
    else:
        dtype = str(session.dtype).removeprefix("torch.")
        text = f"loaded · {session.device.type} · {dtype} · up to {session.max_duration:g} s"
        colour = "#1b6e20"
    return (
        f"<span style='font-size:12px'><span style='color:{colour}'>●</span> {escape(text)}</span>"
    )


def uploads_note_html(uploads: dict, melody_disabled: bool) -> str:
    """The note next to the uploads: the files held, or what may be uploaded.

    Examples
    --------
    >>> "up to 20 MB" in uploads_note_html({"audio_prompt": None, "melody": None}, False)
    True
    """
    parts = [f"{kind.replace('_', ' ')}: {escape(v[0])}" for kind, v in uploads.items() if v]
    if not parts:
        parts = [f"wav, flac, ogg or mp3, up to {MAX_UPLOAD_BYTES // 2**20} MB"]
        if melody_disabled:
            parts.append("melody needs a melody checkpoint")
    return f"<span style='font-size:12px;color:#666;margin-left:6px'>{' · '.join(parts)}</span>"


def error_html(text: str) -> str:
    """One error message, escaped, in a red box.

    Examples
    --------
    >>> "&lt;b&gt;" in error_html("<b>")
    True
    """
    return (
        "<div style='color:#a4001d;background:#fde8ea;padding:4px 8px;border-radius:4px'>"
        f"{escape(text)}</div>"
    )


def _history_cell(r: dict, c: str) -> str:
    v = r[c]
    if c == "prompt":
        text = v or "(unconditional)"
        short = text if len(text) <= 36 else text[:35] + "…"
        return f"<span title='{escape(text)}'>{escape(short)}</span>"
    if c == "seconds":
        stopped = " <span style='color:#8a5a00'>(stopped)</span>" if r["stopped"] else ""
        return f"{v:.1f} s{stopped}"
    return escape(v)


def history_table(records: list) -> str:
    """The history as an HTML table, newest run first.

    Examples
    --------
    >>> "no runs yet" in history_table([])
    True
    """
    if not records:
        return "<div class='mgnb-history' style='color:#888;font-size:12px;padding:2px'>no runs yet</div>"
    cell = "padding:3px 6px;text-align:left;white-space:nowrap"
    head = "".join(
        f"<th style='{cell};border-bottom:1px solid #bbb;font-weight:600'>{escape(t)}</th>"
        for t in HISTORY_COLUMNS.values()
    )
    rows = "".join(
        f"<tr style='background:{'#f6f8fa' if i % 2 else 'transparent'}'>"
        + "".join(f"<td style='{cell}'>{_history_cell(r, c)}</td>" for c in HISTORY_COLUMNS)
        + "</tr>"
        for i, r in enumerate(reversed(records))
    )
    return (
        "<table class='mgnb-history' style='font-size:12px;border-collapse:collapse;width:100%'>"
        f"<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
    )
