"""The studio: one panel to prompt, generate, listen, compare and save.

Every control maps to a plain method of :class:`Studio` (``params``,
``generate``, ``stop``, ``roll_seed``, ``set_upload``, ``replay``, ``rerun``,
``save``), so tests and scripts drive it without a browser. Runs happen in a
background thread: the notebook stays responsive, Generate is disabled while a
run is in flight, and Stop ends it at the next step, keeping the partial result.
Works with ipywidgets 7 (Colab) and 8.
"""

from __future__ import annotations

import random
import threading
import time
from typing import TYPE_CHECKING

from ..players.live_player import LivePlayer
from . import studio_layout as layout
from ._util import after_this_cell, one_line, upload_files, widget_bundle
from .studio_history import RunHistory
from .studio_run import (
    MODELS,
    Background,
    is_melody_name,
    read_upload,
    run,
    upload_kwargs,
)
from .synced_player import SyncedPlayer

if TYPE_CHECKING:
    import os
    from typing import Any

    from ..generation import Generation
    from ..models import MusicGen

__all__ = ["MODELS", "Studio", "run", "studio"]


class Studio(RunHistory):
    """The studio panel. Build it with :func:`studio`.

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> st = mg.studio("tiny", display=False)
    >>> st.prompt.value = "lo-fi beat"
    >>> st.duration.value = 1.0
    >>> g = st.generate(wait=True)
    >>> len(st.history), st.running, st.session().name, sorted(st.params())[:2]
    (1, False, 'tiny', ['duration', 'guidance_scale'])
    >>> st.seed.value, st.lock.value = 5, True  # keep the seed
    >>> st.generate_now(duration=0.5).seed  # blocking, with overrides of params()
    5
    >>> st.rerun(1, wait=True).audio.shape  # run 1 again: its parameters and seed
    (1, 1, 32000)
    >>> st.replay(1); st.show(2); len(st.show_figures(2)), len(st.figures_for(2))
    (2, 2)
    >>> [p.suffix for p in st.save(1)]  # into save_dir, "outputs"
    ['.wav']
    >>> st.set_upload("melody", "tune.wav", b"not audio")  # refused: the panel says why
    False
    >>> st.clear_uploads(); st.roll_seed() >= 0, st.load_model(wait=True)
    (True, True)
    >>> st.stop(); st.wait()  # stop a run in flight at its next step; wait for it (none here)
    """

    def __init__(
        self,
        model_or_session: str | MusicGen = "facebook/musicgen-small",
        *,
        save_dir: str | os.PathLike = "outputs",
    ) -> None:
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
        self._jobs = Background()
        self._stop = self._jobs.stop
        self._status_lock = threading.Lock()
        self.last_error: str | None = None
        self._shown = False  # studio() displayed the panel in the cell running now
        self._build(name)

    # ------------------------------------------------------------------ widgets
    def _build(self, name: str) -> None:
        vars(self).update(layout.controls(name, MODELS, SyncedPlayer, LivePlayer))
        self.status.value = self._status_text()
        self._wire()
        self._model_changed(self.model.value, load=False)
        self.panel = layout.panel(self)

    def _wire(self) -> None:
        """Connect every control to its plain method."""
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

    def _ipython_display_(self):
        from IPython.display import display

        # mg.studio(...) as a cell's last line: studio() showed the panel already, and the
        # cell's result (this Studio) would show it a second time.
        if self._shown:
            self._shown = False
            return
        display(self.panel)

    def _shown_this_cell(self) -> None:
        """studio() displayed the panel: not again as this cell's result (cleared after it)."""
        self._shown = after_this_cell(lambda: setattr(self, "_shown", False))

    def _repr_mimebundle_(self, **kwargs):
        return widget_bundle(self.panel, **kwargs)

    # ------------------------------------------------------------------ state
    def _status_text(self, note: str = "") -> str:
        name = self.model.value if hasattr(self, "model") else ""
        return layout.status_html(self._sessions.get(name), note)

    def _set_status(self, note: str = "", *, name: str | None = None) -> None:
        """Show the status of ``name`` if it is still the dropdown's choice."""
        with self._status_lock:
            if name is None or name == self.model.value:
                self.status.value = self._status_text(note)

    def _model_changed(self, name: str, *, load: bool = True) -> None:
        melody = is_melody_name(name)
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
        """Load the model chosen in the dropdown, in the background.

        The model dropdown's handler. Errors show in the panel.

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
        self.uploads_note.value = layout.uploads_note_html(
            self.uploads, self.melody_upload.disabled
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
            self.uploads[kind] = read_upload(kind, name, data, self.model.value)
        except ValueError as exc:
            self.uploads[kind] = None
            self._error(str(exc))
            self._uploads_note()
            return False
        self.message.value = ""
        self._uploads_note()
        return True

    def clear_uploads(self) -> None:
        """Forget both uploads."""
        self.uploads = {"audio_prompt": None, "melody": None}
        self._uploads_note()

    def _error(self, text: str) -> None:
        self.last_error = text
        self.message.value = layout.error_html(text)

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

    def session(self, name: str | None = None) -> MusicGen:
        """The loaded model for ``name`` (default: the dropdown's choice), loaded on first use.

        The studio keeps the session it was given and the last one it loaded,
        so that browsing the dropdown does not pile models up in memory.
        """
        from ..models import load

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
        return self._jobs.running

    # ------------------------------------------------------------------ actions
    def generate(
        self, *, params: dict | None = None, wait: bool = False
    ) -> Generation | bool | None:
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

        def before():
            self.generate_button.disabled = True
            self.stop_button.disabled = target != self._run
            self.message.value = ""
            self.last_error = None

        def after():
            self.generate_button.disabled = False
            self.stop_button.disabled = True

        return self._jobs.start(target, *args, before=before, after=after)

    def generate_now(self, **overrides: Any) -> Generation | None:
        """Run with the current controls (plus ``overrides`` of :meth:`params`) until done.

        It blocks: the Generate button without a browser.

        Returns
        -------
        Generation or None
            None when the run failed; ``s.last_error`` says why.
        """
        return self.generate(params=overrides, wait=True)

    def wait(self, timeout: float | None = None) -> None:
        """Block until the run (or model load) in flight, if any, ends."""
        self._jobs.wait(timeout)

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
            extra = upload_kwargs(self.uploads, s.is_melody)
            t0 = time.perf_counter()
            self.live.layout.display = ""
            g = run(s, dict(p, **extra), callback=self._progress, stop=self._stop, player=self.live)
            elapsed = time.perf_counter() - t0
            self._add(g, p, elapsed)
        except Exception as exc:  # the panel stays usable and says what went wrong
            self._error(one_line(exc))
            failed = p["model"] not in self._sessions
            self._set_status(f"could not load {p['model']}" if failed else "", name=p["model"])


def studio(
    model_or_session: str | MusicGen = "facebook/musicgen-small",
    *,
    display: bool = True,
    save_dir: str | os.PathLike = "outputs",
) -> Studio:
    """Show the studio panel.

    Parameters
    ----------
    model_or_session : str or MusicGen
        A model name (loaded lazily, on the first Generate) or a loaded session.
    display : bool
        Display the panel now (in a notebook). The Studio is returned either way; as the
        last line of the cell it is not displayed a second time.
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

        show(st.panel)
        st._shown_this_cell()  # not again as this cell's result (one panel per call)
    return st
