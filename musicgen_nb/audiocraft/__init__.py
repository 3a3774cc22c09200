"""audiocraft's documented MusicGen API, running on musicgen-nb (no audiocraft needed).

Switch audiocraft code by its import line::

    # from audiocraft.models import MusicGen
    # from audiocraft.data.audio import audio_write
    # from audiocraft.utils.notebook import display_audio
    from musicgen_nb.audiocraft import MusicGen, audio_write, display_audio

- :class:`MusicGen`: ``get_pretrained``, ``set_generation_params``, ``generate``,
  ``generate_unconditional``, ``generate_continuation``, ``generate_with_chroma``,
  ``set_custom_progress_callback``, ``sample_rate``, ``frame_rate``,
  ``audio_channels``, ``max_duration`` (:mod:`.models`);
- :func:`audio_write` (:mod:`.audio`) and :func:`display_audio` (:mod:`.notebook`);
- :func:`export_checkpoint`: a model in audiocraft's checkpoint layout, which
  :func:`musicgen_nb.load` also reads (:mod:`musicgen_nb.checkpoints.audiocraft_format`).

No audiocraft, torchaudio or xformers is imported. Where we differ from
audiocraft, the docstring of the call says so.

Examples
--------
>>> from musicgen_nb.audiocraft import MusicGen
>>> MusicGen.get_pretrained("tiny", device="cpu").sample_rate
32000
"""

from .audio import audio_write
from .export import export_checkpoint
from .models import MusicGen
from .notebook import display_audio

__all__ = ["MusicGen", "audio_write", "display_audio", "export_checkpoint"]
