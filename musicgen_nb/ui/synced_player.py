"""The synced player: audio with a token grid and a spectrogram that follow playback.

An anywidget whose front end lives in ``widgets/synced_player.js`` and
``widgets/synced_player.css`` (shipped as package data). The Python side sends
compact payloads: compressed audio as a data URI, codes as uint16 bytes and the
log-mel spectrogram as uint8 bytes, each capped. The playhead position comes
back as ``current_time``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anywidget
import numpy as np
import traitlets

from ..players.assets import asset
from ._util import codes_payload, spectrogram_payload

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

    from ..generation import Generation


class SyncedPlayer(anywidget.AnyWidget):
    """Play audio while a playhead moves over its tokens and spectrogram.

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> from musicgen_nb.ui import SyncedPlayer
    >>> g = mg.load("tiny").generate("jazz", duration=1, seed=0, progress=False)
    >>> p = SyncedPlayer.from_generation(g)
    >>> p.frames, p.num_codebooks, round(p.duration, 2)
    (50, 4, 1.0)
    >>> p.seek(0.5)
    >>> p.current_frame
    25
    >>> p.show(g.audio[0, :, :16000], g.sample_rate, codes=g.codes[0, :, :25]).frames
    25
    """

    _esm = asset("synced_player.js")
    _css = asset("synced_player.css")

    audio_url = traitlets.Unicode("").tag(sync=True)
    label = traitlets.Unicode("").tag(sync=True)
    duration = traitlets.Float(0.0).tag(sync=True)
    codes_b64 = traitlets.Unicode("").tag(sync=True)
    num_codebooks = traitlets.Int(0).tag(sync=True)
    frames = traitlets.Int(0).tag(sync=True)
    frame_rate = traitlets.Float(50.0).tag(sync=True)
    codebook_size = traitlets.Int(2048).tag(sync=True)
    spec_b64 = traitlets.Unicode("").tag(sync=True)
    spec_shape = traitlets.List([64, 0]).tag(sync=True)
    current_time = traitlets.Float(0.0).tag(sync=True)
    playing = traitlets.Bool(False).tag(sync=True)

    #: Caps on what is sent to the browser.
    max_frames = 3000
    max_seconds = 120.0

    def show(
        self,
        audio: ArrayLike,
        sr: int,
        *,
        codes: ArrayLike | None = None,
        label: str = "",
        item: int = 0,
        codebook_size: int = 2048,
    ) -> SyncedPlayer:
        """Load new audio (and its codes) into the player.

        Parameters
        ----------
        audio : array
            ``[N]``, ``[C, N]`` or ``[B, C, N]`` (``item`` picks the batch item).
        sr : int
        codes : array, optional
            ``[K, T]`` or ``[B, K, T]``.
        """
        from ..players import player

        a = np.asarray(audio, dtype=np.float32)
        if a.ndim == 3:
            a = a[item]
        if a.ndim not in (1, 2) or a.shape[-1] == 0:
            raise ValueError(
                f"audio must be [N], [C, N] or [B, C, N] with samples, got shape {np.shape(audio)}"
            )
        clip = player(a, sr, max_seconds=self.max_seconds)
        spec_b64, spec_shape = spectrogram_payload(a[..., : int(self.max_seconds * sr)], sr)
        if codes is not None:
            c = np.asarray(codes)
            c = c[item] if c.ndim == 3 else c
            if c.ndim != 2:
                raise ValueError(f"codes must be [K, T] or [B, K, T], got shape {np.shape(codes)}")
            b64, k, t = codes_payload(c, self.max_frames)
        else:
            b64, k, t = "", 0, 0
        with self.hold_sync():
            self.label = label
            self.duration = min(a.shape[-1] / sr, self.max_seconds)
            self.codes_b64, self.num_codebooks, self.frames = b64, k, t
            self.codebook_size = int(codebook_size)
            self.spec_b64, self.spec_shape = spec_b64, spec_shape
            self.current_time = 0.0
            self.audio_url = clip.data_uri
        return self

    @classmethod
    def from_generation(cls, g: Generation, *, item: int = 0) -> SyncedPlayer:
        """A player for batch item ``item`` of a :class:`~musicgen_nb.Generation`."""
        label = g.prompts[item] or "(unconditional)"
        p = cls(frame_rate=float(g.frame_rate))
        seed = g.provenance(item)["seed"]  # this item's own seed
        return p.show(
            g.audio, g.sample_rate, codes=g.codes, label=f"{label}  ·  seed {seed}", item=item
        )

    def seek(self, seconds: float) -> None:
        """Move the playhead (and the browser's audio) to ``seconds``."""
        if not 0 <= seconds <= max(self.duration, 0):
            raise ValueError(f"seconds must be in [0, {self.duration:g}], got {seconds!r}")
        self.current_time = float(seconds)

    @property
    def current_frame(self) -> int:
        """The token frame under the playhead."""
        return int(self.current_time * self.frame_rate)
