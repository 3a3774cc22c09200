"""``MusicGen``: audiocraft's documented generation API, on musicgen-nb's engine.

Code written for audiocraft runs after one changed import line::

    from musicgen_nb.audiocraft import MusicGen, audio_write, display_audio

No audiocraft, torchaudio or xformers is needed. The calls follow audiocraft's
documented semantics: torch tensors ``[B, C, T]`` on the model's device, the
global torch seed (``torch.manual_seed``) makes a run repeatable, a
continuation's output includes its prompt and lasts ``duration`` in all, and
``return_tokens=True`` also returns the codes ``[B, K, frames]``. Bad arguments
get musicgen-nb's errors (a ``ValueError`` or ``TypeError`` naming the
argument), not assertion errors. The differences are listed on each method.

Examples
--------
>>> import torch
>>> model = MusicGen.get_pretrained("tiny", device="cpu")
>>> model.set_generation_params(duration=1.0)
>>> _ = torch.manual_seed(0)
>>> wav = model.generate(["lo-fi beat"])
>>> tuple(wav.shape), model.sample_rate
((1, 1, 32000), 32000)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from ..models import load
from .params import as_batch, check_bool, check_int, check_number, engine_params, print_progress

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

__all__ = ["SHORT_NAMES", "MusicGen"]

#: audiocraft's short names and the hub ids they stand for.
SHORT_NAMES = {k: f"facebook/musicgen-{k}" for k in ("small", "medium", "large", "melody")}
_SEED_LIMIT = 2**62


class MusicGen:
    """audiocraft's ``MusicGen`` (its documented API) over a musicgen-nb session.

    Make one with :meth:`get_pretrained`. ``session`` is the
    :class:`musicgen_nb.MusicGen` underneath, for everything audiocraft lacks.

    Examples
    --------
    >>> model = MusicGen.get_pretrained("tiny", device="cpu")
    >>> model.frame_rate, model.audio_channels, model.max_duration, model.duration
    (50, 1, 4.0, 4.0)
    """

    def __init__(self, session: Any) -> None:
        # audiocraft starts at duration=15; a shorter window (tiny: 4 s) starts at its window
        self.session = session
        self.name = session.name
        self._progress_callback = None
        self.set_generation_params(duration=min(15.0, self.max_duration))

    @staticmethod
    def get_pretrained(
        name: str = "facebook/musicgen-melody", device: str | None = None
    ) -> MusicGen:
        """Load a checkpoint: ``small``, ``medium``, ``large``, ``melody``, a hub id or a folder.

        Anything :func:`musicgen_nb.load` takes works too (``"tiny"``, an
        audiocraft-format folder). ``device=None`` is ``"cuda"`` when there is
        one, else ``"cpu"``, as in audiocraft. Stand-ins apply
        (:mod:`musicgen_nb.testing`).

        Examples
        --------
        >>> MusicGen.get_pretrained("tiny", device="cpu").name
        'tiny'
        """
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        name = SHORT_NAMES.get(name, name) if isinstance(name, str) else name
        return MusicGen(load(name, device=device))

    @property
    def sample_rate(self) -> int:
        """Sample rate of the generated audio (Hz).

        Examples
        --------
        >>> MusicGen.get_pretrained("tiny", device="cpu").sample_rate
        32000
        """
        return self.session.sample_rate

    @property
    def frame_rate(self) -> int:
        """Decoder steps (codec frames) per second.

        Examples
        --------
        >>> MusicGen.get_pretrained("tiny", device="cpu").frame_rate
        50
        """
        return self.session.frame_rate

    @property
    def audio_channels(self) -> int:
        """Channels of the generated audio (2 for stereo checkpoints).

        Examples
        --------
        >>> MusicGen.get_pretrained("tiny-stereo", device="cpu").audio_channels
        2
        """
        return self.session.audio_channels

    @property
    def max_duration(self) -> float:
        """Seconds the model makes in one window (30 for the real checkpoints).

        Examples
        --------
        >>> MusicGen.get_pretrained("tiny", device="cpu").max_duration
        4.0
        """
        return self.session.max_duration

    @property
    def device(self) -> torch.device:
        """The device the model runs on; outputs are tensors on it.

        Examples
        --------
        >>> MusicGen.get_pretrained("tiny", device="cpu").device
        device(type='cpu')
        """
        return self.session.device

    def set_custom_progress_callback(
        self, progress_callback: Callable[[int, int], Any] | None = None
    ) -> None:
        """Call ``progress_callback(generated, total)`` instead of printing progress.

        It is called after each decode step when ``progress=True``, with the
        steps done and the steps to do over all windows (delay steps included).
        Where we differ: in long-form generation audiocraft counts the steps done
        from the window's stride offset and the steps to do of the current window
        only, so its counts are not one running total as ours are.

        Examples
        --------
        >>> model = MusicGen.get_pretrained("tiny", device="cpu")
        >>> model.set_custom_progress_callback(lambda done, total: None)
        """
        if progress_callback is not None and not callable(progress_callback):
            raise TypeError(
                f"progress_callback must be callable or None, got {progress_callback!r}"
            )
        self._progress_callback = progress_callback

    def set_generation_params(
        self,
        use_sampling: bool = True,
        top_k: int = 250,
        top_p: float = 0.0,
        temperature: float = 1.0,
        duration: float = 30.0,
        cfg_coef: float = 3.0,
        cfg_coef_beta: float | None = None,
        two_step_cfg: bool = False,
        extend_stride: float | None = None,
    ) -> None:
        """Set the parameters of the next generations (audiocraft's names and defaults).

        Parameters
        ----------
        use_sampling : bool
            Sample (True) or take the argmax.
        top_k, top_p : int, float
            As in audiocraft, ``top_p > 0`` replaces top-k (top-k is then not applied).
        temperature : float
            ``0`` takes the argmax, as in audiocraft.
        duration : float
            Seconds of audio out, a continuation's prompt included. Longer than
            :attr:`max_duration` generates in windows of ``max_duration`` that move by
            ``extend_stride`` seconds.
        cfg_coef : float
            Classifier-free guidance.
        cfg_coef_beta : float, optional
            Double guidance for melody checkpoints.
        two_step_cfg : bool
            Accepted; guidance is computed in one batched pass either way (the same
            formula: audiocraft notes little effect from the padding it changes).
        extend_stride : float, optional
            Seconds each long-form window moves; below :attr:`max_duration`. None is
            audiocraft's 18 s on a 30 s window (60% of the window on other windows,
            so the 4 s ``tiny`` gets 2.4 s).

        ``generation_params`` then holds audiocraft's keys (``use_sampling``, ``temp``,
        ``top_k``, ``top_p``, ``cfg_coef``, ``two_step_cfg``, ``cfg_coef_beta``).

        Notes
        -----
        Where we differ from audiocraft: the last long-form window ends at ``duration``
        and starts ``max_duration`` earlier, so it re-uses more context than
        audiocraft's, whose last window starts a whole stride after the previous one.

        Examples
        --------
        >>> model = MusicGen.get_pretrained("tiny", device="cpu")
        >>> model.set_generation_params(duration=2, extend_stride=5)
        Traceback (most recent call last):
        ...
        ValueError: extend_stride must be below max_duration (4 s), got 5
        """
        for name, value in [("use_sampling", use_sampling), ("two_step_cfg", two_step_cfg)]:
            check_bool(value, name)
        duration = check_number(duration, "duration")
        if extend_stride is None:
            extend_stride = 18.0 if self.max_duration == 30.0 else 0.6 * self.max_duration
        stride = check_number(extend_stride, "extend_stride")
        if stride >= self.max_duration:
            raise ValueError(
                f"extend_stride must be below max_duration ({self.max_duration:g} s), got {extend_stride!r}"
            )
        top_k = check_int(top_k, "top_k", low=0)
        top_p = check_number(top_p, "top_p", strict=False)
        temp = check_number(temperature, "temperature", strict=False)
        self.duration = duration
        self.extend_stride = stride
        self.generation_params = {
            "use_sampling": use_sampling, "temp": temp, "top_k": top_k, "top_p": top_p,
            "cfg_coef": check_number(cfg_coef, "cfg_coef", strict=False),
            "two_step_cfg": two_step_cfg, "cfg_coef_beta": cfg_coef_beta,
        }  # fmt: skip
        self.two_step_cfg = two_step_cfg

    # ------------------------------------------------------------------------ generation
    def _run(self, texts: list, progress: bool, return_tokens: bool, **extra: Any):
        progress = check_bool(progress, "progress")
        check_bool(return_tokens, "return_tokens")
        seed = int(torch.randint(0, _SEED_LIMIT, (1,)).item())  # the global torch seed rules
        callback = None
        if progress:
            callback = self._progress_callback or print_progress
        duration = extra.pop("duration", self.duration)
        g = self.session.generate(
            texts, duration=duration, seed=seed, progress=False, callback=callback,
            **engine_params(self.generation_params, self.extend_stride), **extra,
        )  # fmt: skip
        if progress and self._progress_callback is None:
            print()
        wav = torch.from_numpy(g.audio).to(self.device)
        if return_tokens:
            return wav, torch.from_numpy(g.codes).to(self.device)
        return wav

    def generate(
        self,
        descriptions: Sequence[str | None],
        progress: bool = False,
        return_tokens: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Generate from text: a tensor ``[B, C, T]`` (and the codes with ``return_tokens``).

        ``T`` is ``round(duration * sample_rate)``: with frames that do not divide
        a second evenly, audiocraft returns whole frames instead.

        Examples
        --------
        >>> model = MusicGen.get_pretrained("tiny", device="cpu")
        >>> model.set_generation_params(duration=0.5)
        >>> wav, tokens = model.generate(["jazz", "rock"], return_tokens=True)
        >>> tuple(wav.shape), tuple(tokens.shape)
        ((2, 1, 16000), (2, 4, 25))
        """
        if isinstance(descriptions, str) or not isinstance(descriptions, (list, tuple)):
            raise TypeError(f"descriptions must be a list of str, got {descriptions!r}")
        return self._run(list(descriptions), progress, return_tokens)

    def generate_unconditional(
        self, num_samples: int, progress: bool = False, return_tokens: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Generate ``num_samples`` clips with no text.

        Examples
        --------
        >>> model = MusicGen.get_pretrained("tiny", device="cpu")
        >>> model.set_generation_params(duration=0.5)
        >>> tuple(model.generate_unconditional(2).shape)
        (2, 1, 16000)
        """
        num_samples = check_int(num_samples, "num_samples")
        return self._run([None] * int(num_samples), progress, return_tokens)

    def generate_continuation(
        self,
        prompt: Any,
        prompt_sample_rate: int,
        descriptions: Sequence[str | None] | None = None,
        progress: bool = False,
        return_tokens: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Continue audio ``prompt`` (``[B, C, T]`` or ``[C, T]``); the output starts with it.

        The output lasts ``duration`` seconds in all, prompt included (its first
        part is the prompt as the codec rebuilds it), and the tokens include the
        prompt's. The prompt is resampled and mixed to the model's channels, and,
        as in audiocraft, must be shorter than ``duration`` (audiocraft's language
        model refuses a prompt that fills the whole generation) and than
        :attr:`max_duration`.

        Examples
        --------
        >>> import torch
        >>> model = MusicGen.get_pretrained("tiny", device="cpu")
        >>> model.set_generation_params(duration=1.0)
        >>> prompt = torch.sin(torch.arange(16000) / 16000 * 2 * torch.pi * 220)[None]
        >>> tuple(model.generate_continuation(prompt, 32000).shape)
        (1, 1, 32000)
        """
        from ..generation.request import prompt_frames

        prompt_sample_rate = check_int(prompt_sample_rate, "prompt_sample_rate", what=" (Hz)")
        arr = as_batch(prompt, "prompt")
        texts = [None] * len(arr) if descriptions is None else list(descriptions)
        if len(texts) != len(arr):
            raise ValueError(
                f"descriptions must hold one item per prompt ({len(arr)}), got {len(texts)}"
            )
        frames = prompt_frames(self.session, arr.shape[-1], prompt_sample_rate)
        total = round(self.duration * self.frame_rate)
        if frames >= total:
            raise ValueError(
                f"prompt is {frames / self.frame_rate:g} s, which must be shorter than duration "
                f"({self.duration:g} s, set_generation_params(duration=...))"
            )
        new = self.duration - frames / self.frame_rate
        return self._run(texts, progress, return_tokens, audio_prompt=arr,
                         audio_prompt_sr=prompt_sample_rate, duration=new)  # fmt: skip

    def generate_with_chroma(
        self,
        descriptions: Sequence[str | None],
        melody_wavs: Any,
        melody_sample_rate: int,
        progress: bool = False,
        return_tokens: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Generate from text and melodies (melody checkpoints).

        ``melody_wavs`` is ``[B, C, T]``, ``[C, T]`` for one description, or a list
        of ``[C, T]`` (or None for no melody) per description. Melodies of one
        length run as one batch; a list with None items or with melodies of
        different lengths runs item by item (items never depend on their
        batch-mates, so the result is the same). As in audiocraft, a text-only
        checkpoint raises RuntimeError: use a melody checkpoint.

        Examples
        --------
        >>> import torch
        >>> model = MusicGen.get_pretrained("tiny-melody", device="cpu")
        >>> model.set_generation_params(duration=0.5)
        >>> tuple(model.generate_with_chroma(["a"], torch.randn(1, 16000), 32000).shape)
        (1, 1, 16000)
        """
        texts = list(descriptions) if isinstance(descriptions, (list, tuple)) else None
        if texts is None:
            raise TypeError(f"descriptions must be a list of str, got {descriptions!r}")
        if isinstance(melody_wavs, (list, tuple)):
            melodies = [None if m is None else as_batch(m, "melody_wavs[i]") for m in melody_wavs]
        else:
            melodies = list(as_batch(melody_wavs, "melody_wavs")[:, None])
        if len(melodies) != len(texts):
            raise ValueError(
                f"melody_wavs must hold one melody per description ({len(texts)}), got {len(melodies)}"
            )
        if not self.session.is_melody:  # audiocraft raises here too, even for None melodies
            raise RuntimeError(
                f"generate_with_chroma needs a melody checkpoint ('melody'); {self.name!r} is "
                "a text-only model"
            )
        if melodies and all(m is not None and m.shape == melodies[0].shape for m in melodies):
            return self._run(texts, progress, return_tokens, melody=np.concatenate(melodies),
                             melody_sr=melody_sample_rate)  # fmt: skip
        outs = [
            self._run([text], progress, True, melody=melody,
                      melody_sr=None if melody is None else melody_sample_rate)
            for text, melody in zip(texts, melodies, strict=True)
        ]  # fmt: skip
        wav, tokens = torch.cat([w for w, _ in outs]), torch.cat([t for _, t in outs])
        return (wav, tokens) if return_tokens else wav
