"""The studio: one panel to prompt, generate, listen, compare and save.

Every control maps to a plain method of :class:`Studio` (``params``,
``generate``, ``stop``, ``roll_seed``, ``set_upload``, ``replay``, ``rerun``,
``save``), so tests and scripts drive it without a browser. Runs happen in a
background thread: the notebook stays responsive, Generate is disabled while a
run is in flight, and Stop ends it at the next step, keeping the partial result.
Works with ipywidgets 7 (Colab) and 8.
"""

from __future__ import annotations

import os
import random
import threading
import time

import ipywidgets as W

from ._util import (
    MAX_UPLOAD_BYTES,
    UPLOAD_TYPES,
    display_bundle,
    escape,
    one_line,
    read_audio_bytes,
    upload_files,
    widget_bundle,
)
from .live_player import LivePlayer
from .synced_player import SyncedPlayer

MODELS = (
    "tiny",
    "tiny-melody",
    "small",
    "medium",
    "large",
    "melody",
    "stereo-small",
    "stereo-melody",
)


def _is_melody_name(name: str) -> bool:
    from ..checkpoints import known

    spec = known().get(name.removeprefix("facebook/musicgen-"))
    return bool(spec and spec["meta"]["melody"]) or "melody" in name


def run(session, params: dict, *, callback=None, stop=None, player=None):
    """Run one generation with the studio's parameters (no widgets involved).

    Parameters
    ----------
    session : MusicGen
    params : dict
        As returned by :meth:`Studio.params`, plus optional ``melody``/``audio_prompt`` entries.
    callback, stop
        Passed to :meth:`MusicGen.generate`.
    player : LivePlayer, optional
        Stream the run into this live player (it plays while it generates).

    Returns
    -------
    Generation
    """
    kw = dict(params)
    prompt = kw.pop("prompt") or None
    negative = kw.pop("negative_prompt") or None
    kw.pop("model", None)
    if negative is not None and kw["guidance_scale"] > 1:
        kw["negative_prompt"] = negative
    if player is not None:
        return player.play(
            session.stream(prompt, progress=False, callback=callback, stop=stop, **kw)
        )
    return session.generate(prompt, progress=False, callback=callback, stop=stop, **kw)


class Studio:
    """The studio panel. Build it with :func:`studio`.

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> st = mg.studio("tiny", display=False)
    >>> st.prompt.value = "lo-fi beat"
    >>> st.duration.value = 1.0
    >>> g = st.generate(wait=True)
    >>> len(st.history)
    1
    """

    def __init__(self, model_or_session="facebook/musicgen-small", *, save_dir="outputs"):
        from ..models import MusicGen

        self.save_dir = save_dir
        self._sessions: dict[str, MusicGen] = {}
        self._given = None
        if isinstance(model_or_session, MusicGen):
            name = self._given = model_or_session.name
            self._sessions[name] = model_or_session
        elif isinstance(model_or_session, str):
            name = model_or_session
        else:
            raise TypeError(
                f"model_or_session must be a model name or a MusicGen, got {type(model_or_session).__name__}"
            )
        self.records: list[dict] = []
        self.generations: list = []
        self.uploads: dict[str, tuple | None] = {"audio_prompt": None, "melody": None}
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._status_lock = threading.Lock()
        self.last_error: str | None = None
        self._build(name)

    # ------------------------------------------------------------------ widgets
    def _build(self, name: str) -> None:
        style = {"description_width": "84px"}
        auto = W.Layout(width="auto")
        options = list(dict.fromkeys([name, *MODELS]))
        self.model = W.Dropdown(
            options=options, value=name, description="model", style=style,
            layout=W.Layout(width="300px"),
        )  # fmt: skip
        self.status = W.HTML(value=self._status_text(), layout=W.Layout(margin="0 0 0 8px"))
        self.prompt = W.Textarea(
            value="lo-fi hip hop beat with mellow piano", placeholder="describe the music",
            description="prompt", layout=W.Layout(width="auto", height="64px"), style=style,
        )  # fmt: skip
        self.negative = W.Textarea(
            value="", placeholder="what to steer away from (optional, needs guidance > 1)",
            description="negative", layout=W.Layout(width="auto", height="36px"), style=style,
        )  # fmt: skip
        slider = dict(continuous_update=False, style=style, layout=auto)
        self.duration = W.FloatSlider(
            value=8.0, min=0.5, max=60.0, step=0.5, description="duration (s)", **slider
        )
        self.guidance = W.FloatSlider(
            value=3.0, min=1.0, max=10.0, step=0.5, description="guidance", **slider
        )
        self.temperature = W.FloatSlider(
            value=1.0, min=0.1, max=2.0, step=0.05, description="temperature", **slider
        )
        self.top_k = W.IntSlider(value=250, min=0, max=1000, step=10, description="top-k", **slider)
        self.top_p = W.FloatSlider(
            value=0.0, min=0.0, max=1.0, step=0.05, description="top-p", **slider
        )
        self.seed = W.IntText(
            value=0, description="seed", style=style, layout=W.Layout(width="220px")
        )
        self.lock = W.ToggleButton(
            value=False, description="lock", icon="lock", tooltip="keep this seed for the next runs",
            layout=auto,
        )  # fmt: skip
        self.dice = W.Button(
            description="",
            icon="random",
            tooltip="draw a random seed",
            layout=W.Layout(width="40px"),
        )
        accept = ",".join(UPLOAD_TYPES)
        self.audio_upload = W.FileUpload(accept=accept, multiple=False, description="audio prompt",
                                         layout=auto)  # fmt: skip
        self.melody_upload = W.FileUpload(accept=accept, multiple=False, description="melody",
                                          layout=auto)  # fmt: skip
        self.clear_button = W.Button(description="clear", icon="times", tooltip="forget both uploads",
                                     layout=auto)  # fmt: skip
        self.uploads_note = W.HTML(value="")
        self.generate_button = W.Button(
            description="Generate",
            button_style="primary",
            icon="play",
            layout=W.Layout(width="130px"),
        )
        self.stop_button = W.Button(description="Stop", button_style="warning", icon="stop",
                                    disabled=True, layout=W.Layout(width="100px"))  # fmt: skip
        self.progress = W.IntProgress(
            value=0, min=0, max=1, description="", layout=W.Layout(width="auto", flex="1 1 auto")
        )
        self.progress_text = W.HTML(value="", layout=W.Layout(width="130px"))
        self.message = W.HTML(value="")
        self.player = SyncedPlayer()
        self.live = LivePlayer(
            show_final=False, layout=W.Layout(display="none")
        )  # plays as it generates
        # A toggle button and an Output, not an Accordion: Colab's widget manager breaks Accordion.
        self.figures_button = W.ToggleButton(
            value=False, description="plotly figures: token grid and spectrogram", icon="eye",
            tooltip="show or hide the figures of the run in the player", layout=auto,
        )  # fmt: skip
        self.figures = W.Output(layout=W.Layout(width="100%", display="none"))
        self.figures_box = W.VBox([self.figures_button, self.figures])
        self.history_html = W.HTML(value=self._history_table(), layout=W.Layout(overflow="auto"))
        self.run_picker = W.Dropdown(options=[], description="run", style={"description_width": "32px"},
                                     layout=W.Layout(width="130px"))  # fmt: skip
        self.replay_button = W.Button(
            description="Replay", icon="play-circle", disabled=True, layout=auto
        )
        self.rerun_button = W.Button(description="Re-run same seed", icon="history", disabled=True,
                                     layout=auto)  # fmt: skip
        self.save_button = W.Button(description="Save", icon="save", disabled=True, layout=auto)

        self.dice.on_click(lambda _: self.roll_seed())
        self.generate_button.on_click(lambda _: self.generate())
        self.stop_button.on_click(lambda _: self.stop())
        self.clear_button.on_click(lambda _: self.clear_uploads())
        self.replay_button.on_click(lambda _: self.replay(self.run_picker.value))
        self.rerun_button.on_click(lambda _: self.rerun(self.run_picker.value))
        self.save_button.on_click(lambda _: self.save(self.run_picker.value))
        self.model.observe(lambda ch: self._model_changed(ch["new"], load=True), names="value")
        self.audio_upload.observe(
            lambda ch: self._upload_changed("audio_prompt", ch["new"]), names="value"
        )
        self.melody_upload.observe(
            lambda ch: self._upload_changed("melody", ch["new"]), names="value"
        )
        self.figures_button.observe(lambda ch: self._figures_toggled(ch["new"]), names="value")
        self._model_changed(self.model.value, load=False)

        def section(title: str) -> W.HTML:
            return W.HTML(
                value=f"<div style='font-size:11px;font-weight:600;letter-spacing:.06em;color:#777;"
                f"text-transform:uppercase;margin:6px 0 0 2px'>{escape(title)}</div>"
            )

        column = dict(width="50%", padding="0 8px 0 0")
        header = W.HTML(
            value="<div style='font-size:16px;font-weight:600'>musicgen-nb studio</div>",
            layout=W.Layout(margin="0 16px 0 0"),
        )
        top = W.HBox([header, self.model, self.status], layout=W.Layout(align_items="center"))
        knobs = W.HBox([
            W.VBox([self.duration, self.guidance, self.temperature], layout=W.Layout(**column)),
            W.VBox([self.top_k, self.top_p, W.HBox([self.seed, self.lock, self.dice])],
                   layout=W.Layout(**column)),
        ])  # fmt: skip
        uploads = W.HBox(
            [self.audio_upload, self.melody_upload, self.clear_button, self.uploads_note],
            layout=W.Layout(align_items="center"),
        )
        actions = W.HBox(
            [self.generate_button, self.stop_button, self.progress, self.progress_text],
            layout=W.Layout(align_items="center"),
        )
        history = W.VBox([
            self.history_html,
            W.HBox([self.run_picker, self.replay_button, self.rerun_button, self.save_button]),
        ])  # fmt: skip
        self.panel = W.VBox(
            [top, section("prompt"), self.prompt, self.negative, section("sampling"), knobs,
             section("conditioning audio"), uploads, actions, self.message, section("output"),
             self.live, self.player, self.figures_box, section("history"), history],
            layout=W.Layout(border="1px solid #d0d0d0", padding="10px 12px", width="auto",
                            max_width="980px"),
        )  # fmt: skip
        self.panel.add_class("mgnb-studio")

    def _ipython_display_(self):
        from IPython.display import display

        display(self.panel)

    def _repr_mimebundle_(self, **kwargs):
        return widget_bundle(self.panel, **kwargs)

    def _figures_toggled(self, shown: bool) -> None:
        self.figures.layout.display = None if shown else "none"
        if shown and self.records:
            self.show_figures(self.run_picker.value)

    # ------------------------------------------------------------------ state
    def _status_text(self, note: str = "") -> str:
        name = self.model.value if hasattr(self, "model") else ""
        s = self._sessions.get(name)
        colour = "#888"
        if note:
            text = note
            colour = "#a4001d" if note.startswith("could not") else "#8a5a00"
        elif s is None:
            text = "not loaded yet (loads on first Generate)"
        else:
            dtype = str(s.dtype).removeprefix("torch.")
            text = f"loaded · {s.device.type} · {dtype} · up to {s.max_duration:g} s"
            colour = "#1b6e20"
        return f"<span style='font-size:12px'><span style='color:{colour}'>●</span> {escape(text)}</span>"

    def _set_status(self, note: str = "", *, name: str | None = None) -> None:
        """Show the status of ``name`` if it is still the dropdown's choice."""
        with self._status_lock:
            if name is None or name == self.model.value:
                self.status.value = self._status_text(note)

    def _model_changed(self, name: str, *, load: bool = True) -> None:
        melody = _is_melody_name(name)
        self.melody_upload.disabled = not melody
        self.melody_upload.tooltip = (
            "" if melody else "melody conditioning needs a melody checkpoint"
        )
        if not melody:
            self.uploads["melody"] = None
        self._set_status()
        self._uploads_note()
        if load and name not in self._sessions:
            self.load_model()

    def load_model(self, *, wait: bool = False) -> bool:
        """Load the model chosen in the dropdown, in the background (the model
        dropdown's handler). Errors show in the panel.

        Returns
        -------
        bool
            Whether loading started (False while a run or a load is in flight).
        """
        started = self._start(self._load, self.model.value)
        if started and wait:
            self.wait()
        return started

    def _load(self, name: str) -> None:
        try:
            self.session(name)
        except Exception as exc:
            self._set_status(f"could not load {name}", name=name)
            self._error(one_line(exc))

    def _uploads_note(self) -> None:
        parts = [
            f"{kind.replace('_', ' ')}: {escape(v[0])}" for kind, v in self.uploads.items() if v
        ]
        if not parts:
            parts = [f"wav, flac, ogg or mp3, up to {MAX_UPLOAD_BYTES // 2**20} MB"]
            if self.melody_upload.disabled:
                parts.append("melody needs a melody checkpoint")
        self.uploads_note.value = (
            f"<span style='font-size:12px;color:#666;margin-left:6px'>{' · '.join(parts)}</span>"
        )

    def _upload_changed(self, kind: str, value) -> None:
        files = upload_files(value)
        if files:
            self.set_upload(kind, *files[0])

    def set_upload(self, kind: str, name: str, data: bytes) -> bool:
        """Read an uploaded file for ``kind`` ("audio_prompt" or "melody").

        Returns False (and shows one message) when the file is refused.
        """
        if kind not in self.uploads:
            raise ValueError(f"kind must be 'audio_prompt' or 'melody', got {kind!r}")
        try:
            if kind == "melody" and not _is_melody_name(self.model.value):
                raise ValueError(
                    f"{name}: melody conditioning needs a melody checkpoint, not {self.model.value!r}"
                )
            audio, sr = read_audio_bytes(name, data)
        except ValueError as exc:
            self.uploads[kind] = None
            self._error(str(exc))
            self._uploads_note()
            return False
        self.uploads[kind] = (name, audio, sr)
        self.message.value = ""
        self._uploads_note()
        return True

    def clear_uploads(self) -> None:
        """Forget both uploads."""
        self.uploads = {"audio_prompt": None, "melody": None}
        self._uploads_note()

    def _error(self, text: str) -> None:
        self.last_error = text
        self.message.value = (
            "<div style='color:#a4001d;background:#fde8ea;padding:4px 8px;border-radius:4px'>"
            f"{escape(text)}</div>"
        )

    def roll_seed(self) -> int:
        """Draw a new random seed into the seed box."""
        self.seed.value = random.SystemRandom().randrange(0, 2**31 - 1)
        return self.seed.value

    def params(self) -> dict:
        """The generate parameters the controls hold now."""
        out = dict(
            model=self.model.value,
            prompt=self.prompt.value.strip(),
            negative_prompt=self.negative.value.strip(),
            duration=float(self.duration.value),
            guidance_scale=float(self.guidance.value),
            temperature=float(self.temperature.value),
            top_k=int(self.top_k.value),
            top_p=float(self.top_p.value),
            seed=int(self.seed.value),
        )
        return out

    def session(self, name: str | None = None):
        """The loaded model for ``name`` (default: the dropdown's choice), loaded on first use.

        The studio keeps the session it was given and the last one it loaded,
        so that browsing the dropdown does not pile models up in memory.
        """
        from .. import load

        name = name or self.model.value
        if name not in self._sessions:
            self._set_status(f"loading {name}...", name=name)
            for other in [n for n in self._sessions if n != self._given]:
                del self._sessions[other]
            self._sessions[name] = load(name)
        self._set_status(name=name)
        return self._sessions[name]

    @property
    def running(self) -> bool:
        """True while a run is in flight."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def history(self):
        """Every run so far as a pandas DataFrame."""
        import pandas as pd

        return pd.DataFrame(self.records)

    # ------------------------------------------------------------------ actions
    def generate(self, *, params: dict | None = None, wait: bool = False):
        """Start a run (the Generate button). Ignored while another run is in flight.

        Parameters
        ----------
        params : dict, optional
            Overrides of :meth:`params` (used by re-run).
        wait : bool
            Block until the run ends and return its Generation.

        Returns
        -------
        Generation, True or False
            The Generation when ``wait``; else whether a run was started.
        """
        if self.running:
            return False
        if not self.lock.value and "seed" not in (params or {}):
            self.roll_seed()
        p = dict(self.params(), **(params or {}))
        if not self._start(self._run, p):
            return False
        if wait:
            self.wait()
            return self.generations[-1] if self.generations and self.last_error is None else None
        return True

    def _start(self, target, *args) -> bool:
        """Run ``target(*args)`` in the background unless something is in flight."""
        with self._lock:
            if self.running:
                return False
            self.generate_button.disabled = True
            self.stop_button.disabled = target != self._run
            self.message.value = ""
            self.last_error = None
            self._stop.clear()

            def work():
                try:
                    target(*args)
                finally:
                    self.generate_button.disabled = False
                    self.stop_button.disabled = True

            self._thread = threading.Thread(target=work, daemon=True)
            self._thread.start()
        return True

    def generate_now(self, **overrides):
        """Run with the current controls (plus ``overrides`` of :meth:`params`) and
        block until done: the Generate button without a browser.

        Returns
        -------
        Generation or None
            None when the run failed; :attr:`last_error` says why.
        """
        return self.generate(params=overrides, wait=True)

    def wait(self, timeout: float | None = None) -> None:
        """Block until the run (or model load) in flight, if any, ends."""
        if self._thread is not None:
            self._thread.join(timeout)

    def stop(self) -> None:
        """Stop the run in flight at its next step; the partial result is kept."""
        self._stop.set()

    def _progress(self, done: int, total: int) -> None:
        if self.progress.max != total:
            self.progress.max = total
        self.progress.value = done
        self.progress_text.value = (
            f"<span style='font-size:12px;color:#555'>step {done} / {total}</span>"
        )

    def _run(self, p: dict) -> None:
        self.progress.value = 0
        self.progress_text.value = ""
        try:
            s = self.session(p["model"])
            extra = {}
            if self.uploads["audio_prompt"]:
                _, audio, sr = self.uploads["audio_prompt"]
                extra.update(audio_prompt=audio, audio_prompt_sr=sr)
            if self.uploads["melody"] and s.is_melody:
                _, audio, sr = self.uploads["melody"]
                extra.update(melody=audio, melody_sr=sr)
            t0 = time.perf_counter()
            self.live.layout.display = ""
            g = run(s, dict(p, **extra), callback=self._progress, stop=self._stop, player=self.live)
            elapsed = time.perf_counter() - t0
            self._add(g, p, elapsed)
        except Exception as exc:  # the panel stays usable and says what went wrong
            self._error(one_line(exc))
            failed = p["model"] not in self._sessions
            self._set_status(f"could not load {p['model']}" if failed else "", name=p["model"])

    def _add(self, g, p: dict, elapsed: float) -> None:
        self.generations.append(g)
        self.seed.value = g.seed
        run_id = len(self.records) + 1
        self.records.append(dict(
            run=run_id, prompt=p["prompt"], negative=p["negative_prompt"], model=p["model"],
            duration=p["duration"], guidance=p["guidance_scale"], temperature=p["temperature"],
            top_k=p["top_k"], top_p=p["top_p"], seed=g.seed, seconds=round(elapsed, 2),
            stopped=g.interrupted, time=time.strftime("%H:%M:%S"),
        ))  # fmt: skip
        self.history_html.value = self._history_table()
        self.run_picker.options = [(f"#{r['run']}", r["run"]) for r in self.records]
        self.run_picker.value = run_id
        for b in (self.replay_button, self.rerun_button, self.save_button):
            b.disabled = False
        self.show(run_id)
        if self.figures_button.value:
            self.show_figures(run_id)
        if g.interrupted:
            self.message.value = f"<span style='color:#8a5a00'>stopped: kept {g.duration:.2f} s of {p['duration']:g} s</span>"

    def _history_table(self) -> str:
        if not self.records:
            return "<div class='mgnb-history' style='color:#888;font-size:12px;padding:2px'>no runs yet</div>"
        cols = {"run": "#", "prompt": "prompt", "model": "model", "duration": "sec",
                "guidance": "cfg", "temperature": "temp", "top_k": "top-k", "top_p": "top-p",
                "seed": "seed", "seconds": "took", "time": "time"}  # fmt: skip
        cell = "padding:3px 6px;text-align:left;white-space:nowrap"
        head = "".join(
            f"<th style='{cell};border-bottom:1px solid #bbb;font-weight:600'>{escape(t)}</th>"
            for t in cols.values()
        )

        def value(r, c):
            v = r[c]
            if c == "prompt":
                text = v or "(unconditional)"
                short = text if len(text) <= 36 else text[:35] + "…"
                return f"<span title='{escape(text)}'>{escape(short)}</span>"
            if c == "seconds":
                stopped = " <span style='color:#8a5a00'>(stopped)</span>" if r["stopped"] else ""
                return f"{v:.1f} s{stopped}"
            return escape(v)

        rows = "".join(
            f"<tr style='background:{'#f6f8fa' if i % 2 else 'transparent'}'>"
            + "".join(f"<td style='{cell}'>{value(r, c)}</td>" for c in cols)
            + "</tr>"
            for i, r in enumerate(reversed(self.records))
        )
        return (
            "<table class='mgnb-history' style='font-size:12px;border-collapse:collapse;width:100%'>"
            f"<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
        )

    def _pick(self, run_id) -> int:
        ids = [r["run"] for r in self.records]
        if run_id not in ids:
            raise ValueError(f"run_id must be one of {ids}, got {run_id!r}")
        return ids.index(run_id)

    def show(self, run_id: int) -> None:
        """Load run ``run_id`` into the synced player."""
        g = self.generations[self._pick(run_id)]
        label = f"#{run_id}  {g.prompts[0] or '(unconditional)'}  ·  seed {g.seed}"
        self.player.frame_rate = float(g.frame_rate)
        self.player.show(g.audio, g.sample_rate, codes=g.codes, label=label)

    def replay(self, run_id: int) -> None:
        """Play an earlier run again (loads it into the player)."""
        self.show(run_id)
        if self.figures_button.value:
            self.show_figures(run_id)

    def figures_for(self, run_id: int | None = None) -> list:
        """The plotly token grid and spectrogram of a run (default: the latest)."""
        from ..viz.spectrogram import spectrogram
        from ..viz.token_grid import token_grid

        g = self.generations[self._pick(run_id if run_id is not None else self.records[-1]["run"])]
        return [token_grid(g), spectrogram(g)]

    def show_figures(self, run_id: int | None = None) -> list:
        """Draw the plotly figures of a run into the figures area (shown by its toggle button).

        Works from the run's background thread too: outputs are set, not captured.
        """
        self.figures.outputs = ()
        try:
            figs = self.figures_for(run_id)
        except Exception as exc:
            self._error(one_line(exc))
            return []
        for fig in figs:
            fig.update_layout(height=260, margin=dict(l=60, r=20, t=40, b=40))
        self.figures.outputs = tuple(display_bundle(fig) for fig in figs)
        return figs

    def rerun(self, run_id: int, *, wait: bool = False):
        """Run an earlier take again with its exact parameters and seed."""
        r = self.records[self._pick(run_id)]
        p = dict(
            model=r["model"], prompt=r["prompt"], negative_prompt=r["negative"], duration=r["duration"],
            guidance_scale=r["guidance"], temperature=r["temperature"], top_k=r["top_k"], top_p=r["top_p"],
            seed=r["seed"],
        )  # fmt: skip
        return self.generate(params=p, wait=wait)

    def save(self, run_id: int, directory: str | os.PathLike | None = None):
        """Save a run with :meth:`Generation.save`; returns the paths."""
        try:
            paths = self.generations[self._pick(run_id)].save(directory or self.save_dir)
        except Exception as exc:
            self._error(one_line(exc))
            return []
        names = ", ".join(escape(p) for p in paths)
        self.message.value = f"<span style='color:#1b6e20'>saved {names}</span>"
        return paths


def studio(
    model_or_session="facebook/musicgen-small", *, display: bool = True, save_dir="outputs"
) -> Studio:
    """Show the studio panel.

    Parameters
    ----------
    model_or_session : str or MusicGen
        A model name (loaded lazily, on the first Generate) or a loaded session.
    display : bool
        Display the panel now (in a notebook). The Studio is returned either way.
    save_dir : path
        Where the Save button writes.

    Returns
    -------
    Studio

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> st = mg.studio("tiny", display=False)
    >>> sorted(st.params())[:3]
    ['duration', 'guidance_scale', 'model']
    """
    st = Studio(model_or_session, save_dir=save_dir)
    if display:
        from IPython.display import display as show

        show(st)
    return st
