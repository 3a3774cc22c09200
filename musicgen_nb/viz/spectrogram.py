"""Log-mel spectrogram heatmap."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go

from .._util.checks import check_positive
from ._util import (
    audio_2d,
    base_layout,
    check_int,
    esc,
    pool_columns,
    unpack_generation,
)

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

    from ..generation import Generation

HOVER = "%{x:.2f} s<br>%{y:.0f} Hz<br>%{z:.1f} dB<extra></extra>"


def spectrogram(
    audio: ArrayLike | Generation,
    sr: int | None = None,
    *,
    item: int = 0,
    n_mels: int = 128,
    n_fft: int = 2048,
    hop_length: int = 512,
    fmax: float | None = None,
    channel: int | None = None,
    max_frames: int = 2000,
    title: str | None = None,
) -> go.Figure:
    """Log-mel spectrogram (dB relative to the peak) as a heatmap.

    Parameters
    ----------
    audio : array-like or Generation
        Samples ``[samples]``, ``[channels, samples]`` or
        ``[batch, channels, samples]``, or a :class:`~musicgen_nb.Generation`
        (then ``sr`` may be ``None``).
    sr : int
        Sample rate in Hz (optional for a ``Generation``).
    item : int
        Batch item to draw when the audio is batched.
    n_mels, n_fft, hop_length : int
        Passed to :func:`librosa.feature.melspectrogram`.
    fmax : float, optional
        Highest mel frequency; defaults to ``sr / 2``.
    channel : int, optional
        Channel to analyse; by default channels are averaged to mono.
    max_frames : int
        At most this many time frames go to the browser; longer spectrograms
        are averaged over blocks of frames (the title says so).
    title : str, optional
        Figure title.

    Returns
    -------
    plotly.graph_objects.Figure
        One heatmap: x = time in seconds (frame centres), y = mel-band centre
        frequency in Hz, z = power in dB (0 dB = loudest bin).

    Examples
    --------
    >>> import numpy as np
    >>> from musicgen_nb import viz
    >>> y = np.sin(2 * np.pi * 440 * np.arange(32000) / 32000)
    >>> fig = viz.spectrogram(y, 32000, n_mels=64)
    >>> fig.data[0].z.shape[0]
    64
    """
    audio, sr, prompt = unpack_generation(audio, sr, item)
    sr, n_mels, n_fft, hop_length, max_frames, fmax = _check_args(
        sr, n_mels, n_fft, hop_length, max_frames, fmax
    )
    y, which = _signal(audio_2d(audio, item, "audio"), channel)
    stft = dict(sr=sr, n_fft=n_fft, hop_length=hop_length)
    db, freqs, times, T = _log_mel(y, n_mels=n_mels, fmax=fmax, max_frames=max_frames, **stft)
    if title is not None:
        title = esc(title)  # plain text: "<", ">" and "&" show as typed
    else:
        title = f"Log-mel spectrogram ({which}, {n_mels} mels, n_fft={n_fft}, hop={hop_length})"
        title = title if prompt is None else f"{prompt} — {title}"
    if len(times) < T:
        title += f"<br><sup>averaged to {len(times)} of {T} frames</sup>"
    return _figure(db, times, freqs, title)


def _check_args(sr, n_mels, n_fft, hop_length, max_frames, fmax) -> tuple:
    sr = check_positive(sr, "sr")
    n_mels = check_int(n_mels, "n_mels", minimum=1)
    n_fft = check_int(n_fft, "n_fft", minimum=2)
    hop_length = check_int(hop_length, "hop_length", minimum=1)
    max_frames = check_int(max_frames, "max_frames", minimum=1)
    fmax = check_positive(sr / 2 if fmax is None else fmax, "fmax")
    if fmax > sr / 2:
        raise ValueError(f"fmax must be at most sr / 2 = {sr / 2:g} Hz, got {fmax!r}")
    return sr, n_mels, n_fft, hop_length, max_frames, fmax


def _signal(wav: np.ndarray, channel) -> tuple[np.ndarray, str]:
    """The samples to analyse (one channel, or the mono mix) and what they are."""
    if channel is None:
        return wav.mean(axis=0), "mono mix" if wav.shape[0] > 1 else "mono"
    channel = check_int(channel, "channel", minimum=0)
    if channel >= wav.shape[0]:
        raise ValueError(
            f"channel={channel} is out of range for audio with {wav.shape[0]} channel(s) "
            f"(allowed: 0..{wav.shape[0] - 1} or None for a mono mix)"
        )
    return wav[channel], f"channel {channel}"


def _log_mel(y, *, sr, n_fft, hop_length, n_mels, fmax, max_frames):
    """(dB ``[n_mels, cols]``, band centres in Hz, column times in s, frames before pooling)."""
    import librosa

    N = y.shape[0]
    if N < n_fft:  # too short for one window: zero-pad rather than shrink the FFT
        y = np.pad(y, (0, n_fft - N))
    S = librosa.feature.melspectrogram(
        y=y, sr=sr, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels, fmax=fmax
    )
    db = librosa.power_to_db(S, ref=np.max(S) if np.max(S) > 0 else 1.0).astype(np.float32)
    freqs = librosa.mel_frequencies(n_mels=n_mels + 2, fmin=0.0, fmax=fmax)[1:-1]
    T = db.shape[1]
    db, starts = pool_columns(db, max_frames, how="mean")
    times = librosa.frames_to_time(starts, sr=sr, hop_length=hop_length)
    if len(starts) < T:  # block centres
        block = starts[1] - starts[0]
        times = times + (block - 1) * hop_length / sr / 2
    return db, freqs, times, T


def _figure(db, times, freqs, title: str) -> go.Figure:
    fig = go.Figure(
        go.Heatmap(
            z=db,
            x=times.astype(np.float32),
            y=freqs.astype(np.float32),
            colorscale="Magma",
            colorbar=dict(title=dict(text="dB")),
            hovertemplate=HOVER,
            name="log-mel",
        )
    )
    base_layout(fig, title=title, height=360)
    fig.update_xaxes(title_text="time (s)")
    # A log axis: an octave takes the same height anywhere, so pitch reads as height.
    # The range stops at the lowest band's centre: on a log axis its lower edge would reach
    # towards 0 Hz and stretch one band over a third of the plot.
    lo, hi = np.log10(freqs[0]), np.log10(freqs[-1])
    fig.update_yaxes(title_text="frequency (Hz, log scale)", type="log", range=[lo, hi])
    return fig
