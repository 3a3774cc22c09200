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

import math
import numbers
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..models import load

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

__all__ = ["SHORT_NAMES", "MusicGen"]

#: audiocraft's short names and the hub ids they stand for.
SHORT_NAMES = {k: f"facebook/musicgen-{k}" for k in ("small", "medium", "large", "melody")}
_SEED_LIMIT = 2**62


def _bool(value, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


def _number(value, name: str, *, low: float = 0.0, strict: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise TypeError(f"{name} must be a finite number, got {value!r}")
    if value < low or (strict and value == low):
        raise ValueError(f"{name} must be {'>' if strict else '>='} {low:g}, got {value!r}")
    return float(value)


def _audio(x, name: str) -> np.ndarray:
    """A torch tensor or array ``[B, C, T]`` or ``[C, T]`` as float32 numpy ``[B, C, T]``."""
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float32).numpy()
    arr = np.asarray(x, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ValueError(
            f"{name} must be [B, C, T] (or [C, T] for one item), got shape {arr.shape}"
        )
    return arr


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
        """Sample rate of the generated audio (Hz)."""
        return self.session.sample_rate

    @property
    def frame_rate(self) -> int:
        """Decoder steps (codec frames) per second."""
        return self.session.frame_rate

    @property
    def audio_channels(self) -> int:
        """Channels of the generated audio (2 for stereo checkpoints)."""
        return self.session.audio_channels

    @property
    def max_duration(self) -> float:
        """Seconds the model makes in one window (30 for the real checkpoints)."""
        return self.session.max_duration

    @property
    def device(self) -> torch.device:
        """The device the model runs on; outputs are tensors on it."""
        return self.session.device

    def set_custom_progress_callback(
        self, progress_callback: Callable[[int, int], Any] | None = None
    ) -> None:
        """Call ``progress_callback(generated, total)`` instead of printing progress.

        It is called after each decode step when ``progress=True``, with the
        steps done and the steps to do over all windows (delay steps included).

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
            _bool(value, name)
        duration = _number(duration, "duration")
        if extend_stride is None:
            extend_stride = 18.0 if self.max_duration == 30.0 else 0.6 * self.max_duration
        stride = _number(extend_stride, "extend_stride")
        if stride >= self.max_duration:
            raise ValueError(
                f"extend_stride must be below max_duration ({self.max_duration:g} s), got {extend_stride!r}"
            )
        if isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral) or top_k < 0:
            raise ValueError(f"top_k must be an int >= 0, got {top_k!r}")
        top_p = _number(top_p, "top_p", strict=False)
        self.duration = duration
        self.extend_stride = stride
        self.generation_params = dict(
            do_sample=use_sampling, top_k=0 if top_p > 0 else int(top_k), top_p=top_p,
            temperature=_number(temperature, "temperature"),
            guidance_scale=_number(cfg_coef, "cfg_coef", strict=False),
            cfg_coef_beta=cfg_coef_beta, extend_stride=stride,
        )  # fmt: skip
        self.two_step_cfg = two_step_cfg

    # ------------------------------------------------------------------------ generation
    def _run(self, texts: list, progress: bool, return_tokens: bool, **extra: Any):
        progress = _bool(progress, "progress")
        _bool(return_tokens, "return_tokens")
        seed = int(torch.randint(0, _SEED_LIMIT, (1,)).item())  # the global torch seed rules
        callback = None
        if progress:
            callback = self._progress_callback or _print_progress
        duration = extra.pop("duration", self.duration)
        g = self.session.generate(
            texts, duration=duration, seed=seed, progress=False, callback=callback,
            **self.generation_params, **extra,
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
        if (
            isinstance(num_samples, bool)
            or not isinstance(num_samples, numbers.Integral)
            or num_samples < 1
        ):
            raise ValueError(f"num_samples must be an int >= 1, got {num_samples!r}")
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
        prompt's. The prompt is resampled and mixed to the model's channels, and
        must be shorter than ``duration`` and than :attr:`max_duration` (audiocraft
        also accepts a prompt exactly as long as ``duration``).

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

        arr = _audio(prompt, "prompt")
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
        of ``[C, T]`` (or None for no melody) per description. Where we differ: a
        melody shorter than the output loops (audiocraft conditions on the melody's
        own length), and each item runs on its own (same result as a batch: items
        never depend on their batch-mates).

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
            melodies = [None if m is None else _audio(m, "melody_wavs[i]") for m in melody_wavs]
        else:
            melodies = list(_audio(melody_wavs, "melody_wavs")[:, None])
        if len(melodies) != len(texts):
            raise ValueError(
                f"melody_wavs must hold one melody per description ({len(texts)}), got {len(melodies)}"
            )
        outs = [
            self._run([text], progress, True, melody=melody,
                      melody_sr=None if melody is None else melody_sample_rate)
            for text, melody in zip(texts, melodies, strict=True)
        ]  # fmt: skip
        wav, tokens = torch.cat([w for w, _ in outs]), torch.cat([t for _, t in outs])
        return (wav, tokens) if return_tokens else wav


def _print_progress(done: int, total: int) -> None:
    print(f"{done: 6d} / {total: 6d}", end="\r", flush=True)
