"""Audio I/O and DSP helpers: batching, resampling, loading, writing, loudness, test tones.

Pure numpy, soxr, soundfile and librosa (never torchaudio). Arrays are float32 with
samples on the last axis: ``[N]``, ``[channels, N]`` or ``[batch, channels, N]``.

Modules: :mod:`~musicgen_nb.audio.arrays` (coercion, batching, channels),
:mod:`~musicgen_nb.audio.resample`, :mod:`~musicgen_nb.audio.io` (files),
:mod:`~musicgen_nb.audio.ogg` (compressed audio for players),
:mod:`~musicgen_nb.audio.loudness`, :mod:`~musicgen_nb.audio.tones` and
:mod:`~musicgen_nb.audio.examples` (real music shipped with the package).

Examples
--------
>>> from musicgen_nb import audio
>>> x = audio.sine(440.0, 1.0, 32000)
>>> audio.as_batch(x).shape
(1, 1, 32000)
>>> audio.resample(x, 32000, 16000).shape
(16000,)
"""

from .._util.checks import check_sr
from .._util.files import claim, unique_path, write_temp
from .arrays import as_batch, match_channels, one_item
from .examples import EXAMPLES, example, provenance
from .io import FORMATS, encode, load, write
from .loudness import loudness, normalize_loudness
from .resample import resample
from .tones import melody_tone, note_to_midi, sine

__all__ = [
    "FORMATS",
    "as_batch",
    "resample",
    "match_channels",
    "load",
    "write",
    "unique_path",
    "loudness",
    "normalize_loudness",
    "sine",
    "melody_tone",
    "note_to_midi",
    "one_item",
    "encode",
    "write_temp",
    "claim",
    "check_sr",
    "EXAMPLES",
    "example",
    "provenance",
]
