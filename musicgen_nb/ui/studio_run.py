"""The studio's work without widgets: one run from its parameters, and its record.

:func:`run` is what the Generate button does, as a plain function that tests
and scripts call directly; the rest turns uploads into generate arguments and a
finished run into a history row.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from ._util import read_audio_bytes

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from ..generation import Generation
    from ..models import MusicGen
    from ..players import LivePlayer

#: The models offered in the studio's dropdown (after the one it was opened with).
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
#: Record key -> the generate parameter it holds (to re-run a take).
RECORD_PARAMS = {"model": "model", "prompt": "prompt", "negative": "negative_prompt",
                 "duration": "duration", "guidance": "guidance_scale",
                 "temperature": "temperature", "top_k": "top_k", "top_p": "top_p",
                 "seed": "seed"}  # fmt: skip


def is_melody_name(name: str) -> bool:
    """Whether the model called ``name`` takes a melody (a known melody checkpoint or such a name).

    Examples
    --------
    >>> is_melody_name("tiny-melody"), is_melody_name("facebook/musicgen-small")
    (True, False)
    """
    from ..checkpoints import known

    spec = known().get(name.removeprefix("facebook/musicgen-"))
    return bool(spec and spec["meta"]["melody"]) or "melody" in name


def run(
    session: MusicGen,
    params: dict,
    *,
    callback: Callable[..., Any] | None = None,
    stop: threading.Event | None = None,
    player: LivePlayer | None = None,
) -> Generation:
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

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> p = dict(prompt="jazz", negative_prompt="", duration=0.5, guidance_scale=1.0,
    ...          temperature=1.0, top_k=0, top_p=0.0, seed=3, model="tiny")
    >>> run(mg.load("tiny"), p).seed
    3
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


def upload_kwargs(uploads: dict, is_melody: bool) -> dict:
    """Generate arguments from the uploads ``{kind: (name, audio, sr) or None}``.

    The melody is used only by a melody model.

    Examples
    --------
    >>> import numpy as np
    >>> up = {"audio_prompt": None, "melody": ("a.wav", np.zeros((1, 8)), 8000)}
    >>> sorted(upload_kwargs(up, True)), upload_kwargs(up, False)
    (['melody', 'melody_sr'], {})
    """
    extra = {}
    if uploads.get("audio_prompt"):
        _, audio, sr = uploads["audio_prompt"]
        extra.update(audio_prompt=audio, audio_prompt_sr=sr)
    if uploads.get("melody") and is_melody:
        _, audio, sr = uploads["melody"]
        extra.update(melody=audio, melody_sr=sr)
    return extra


def record(run_id: int, p: dict, g, elapsed: float) -> dict:
    """The history row of run ``run_id``: its parameters ``p``, seed, time taken and state.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> p = dict(prompt="x", negative_prompt="", model="tiny", duration=1.0, guidance_scale=3.0,
    ...          temperature=1.0, top_k=250, top_p=0.0)
    >>> r = record(1, p, SimpleNamespace(seed=7, interrupted=False), 0.123)
    >>> r["seed"], r["seconds"], r["stopped"]
    (7, 0.12, False)
    """
    return dict(
        run=run_id, prompt=p["prompt"], negative=p["negative_prompt"], model=p["model"],
        duration=p["duration"], guidance=p["guidance_scale"], temperature=p["temperature"],
        top_k=p["top_k"], top_p=p["top_p"], seed=g.seed, seconds=round(elapsed, 2),
        stopped=g.interrupted, time=time.strftime("%H:%M:%S"),
    )  # fmt: skip


def figures(g) -> list:
    """The plotly token grid and spectrogram of a Generation.

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> g = mg.load("tiny").generate("jazz", duration=0.5, seed=0, progress=False)
    >>> [f.data[0].type for f in figures(g)]
    ['heatmap', 'heatmap']
    """
    from ..viz.spectrogram import spectrogram
    from ..viz.token_grid import token_grid

    return [token_grid(g), spectrogram(g)]


def read_upload(kind: str, name: str, data: bytes, model: str) -> tuple:
    """``(name, audio, sr)`` of an uploaded file for ``kind`` ("audio_prompt" or "melody").

    Raises
    ------
    ValueError
        A melody for a model that takes none, or a file that is not readable
        audio (see :func:`musicgen_nb.ui._util.read_audio_bytes`); the message
        names the file.

    Examples
    --------
    >>> read_upload("melody", "tune.wav", b"", "tiny")
    Traceback (most recent call last):
    ...
    ValueError: tune.wav: melody conditioning needs a melody checkpoint, not 'tiny'
    """
    if kind == "melody" and not is_melody_name(model):
        raise ValueError(f"{name}: melody conditioning needs a melody checkpoint, not {model!r}")
    audio, sr = read_audio_bytes(name, data)
    return name, audio, sr


class Background:
    """One job at a time in a daemon thread, with a stop flag the job may watch.

    Examples
    --------
    >>> jobs = Background()
    >>> out = []
    >>> jobs.start(out.append, 1), jobs.wait(), out
    (True, None, [1])
    """

    def __init__(self):
        self.thread: threading.Thread | None = None
        self.stop = threading.Event()
        self._lock = threading.Lock()

    @property
    def running(self) -> bool:
        """True while a job is in flight."""
        return self.thread is not None and self.thread.is_alive()

    def start(self, target, *args, before=None, after=None) -> bool:
        """Run ``target(*args)`` unless a job is in flight.

        ``before()`` runs first (under the lock), ``after()`` when the job ends, even on an error.
        """
        with self._lock:
            if self.running:
                return False
            if before is not None:
                before()
            self.stop.clear()

            def work():
                try:
                    target(*args)
                finally:
                    if after is not None:
                        after()

            self.thread = threading.Thread(target=work, daemon=True)
            self.thread.start()
        return True

    def wait(self, timeout: float | None = None) -> None:
        """Block until the job in flight, if any, ends."""
        if self.thread is not None:
            self.thread.join(timeout)
