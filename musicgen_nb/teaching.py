"""Callouts for notebook cells whose result needs trained weights.

The notebooks run in CI on ``tiny``, a model with random weights: every code
path runs, but its audio is noise, its attention is arbitrary and its metrics
are at chance. A cell whose *result* needs a trained checkpoint calls
:func:`callout`. On a random-weights model it returns a short note: what the
cell shows with a real checkpoint (quoting only published facts, with their
source) and why the random model cannot show it. On a trained model it returns
``None``, so the cell shows nothing extra.

Plain Python: no ipywidgets, no plotly. The note renders itself in Jupyter
(``_repr_html_``, ``_repr_markdown_``) and prints as text elsewhere.

Examples
--------
>>> import musicgen_nb as mg
>>> note = mg.teaching.callout(mg.load("tiny"), "codec")
>>> note.topic
'codec'
>>> print(str(note).splitlines()[0])
Needs trained weights: 'tiny' has random weights.
"""

from __future__ import annotations

import html
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .models import MusicGen

from .lessons import load

__all__ = [
    "FACTS",
    "SOLUTIONS_ENV",
    "Callout",
    "Fact",
    "callout",
    "has_random_weights",
    "load",
    "scratch",
    "setup",
    "solutions",
]

#: Set to 1 to run the exercise solutions of every notebook (same as ``SOLUTIONS = True``).
SOLUTIONS_ENV = "MUSICGEN_NB_SOLUTIONS"


@dataclass(frozen=True)
class Fact:
    """What a cell shows with trained weights, the published fact behind it, and why not here.

    Examples
    --------
    >>> FACTS["codec"].why.startswith("the offline codec")
    True
    """

    shows: str
    source: str
    why: str


PAPER = 'Copet et al. 2023, "Simple and Controllable Music Generation"'

#: One entry per kind of weights-dependent result in the notebooks. ``source`` quotes
#: published facts only (a paper, a model card, a project's documented defaults).
FACTS: dict[str, Fact] = {
    "audio": Fact(
        shows="music that follows the prompt: instruments, genre and mood you can hear.",
        source=f"MusicGen was trained on 20K hours of licensed music ({PAPER}; "
        "the facebook/musicgen-* model cards).",
        why="random decoder weights pick random tokens, and the codec decodes them to noise.",
    ),
    "codec": Fact(
        shows="one codebook keeps the outline of the sound; each added codebook encodes what "
        "the previous ones missed, so the decoded audio gets closer to the input (the SNR column "
        "is our own measure of that; no published SNR figure is quoted).",
        source="EnCodec's residual quantizer makes each codebook encode the residual of the "
        "previous ones, and its listening scores (MUSHRA) rise with the bitrate (Défossez et "
        'al. 2022, "High Fidelity Neural Audio Compression", arXiv:2210.13438). MusicGen '
        f"uses a 32 kHz EnCodec: 4 codebooks of 2048 entries at 50 frames/s ({PAPER}).",
        why="the offline codec's codebooks are random vectors, so the decoded audio is "
        "unrelated to the input and the SNR does not depend on how many codebooks you keep.",
    ),
    "roundtrip": Fact(
        shows="how many tokens survive decode -> encode with a trained codec; no published "
        "figure exists for it, so measure it on a real checkpoint.",
        source="EnCodec is trained to reconstruct the audio, not the tokens: its losses are "
        "on the waveform and spectrogram (plus adversarial losses and a commitment loss on "
        'the quantizer) (Défossez et al. 2022, "High Fidelity Neural Audio Compression").',
        why="the offline codec's encoder and decoder are random and were never trained to "
        "invert each other, so almost no token survives.",
    ),
    "guidance": Fact(
        shows="a higher guidance scale lowers the entropy and pulls the music towards the "
        "prompt; the unconditional branch sounds like generic music.",
        source="The unconditional branch is learnt by dropping all conditions for part of the "
        "training examples: `classifier_free_guidance.training_dropout` is 0.3 in audiocraft's "
        "config/conditioner/text2music.yaml (0.2 in chroma2music.yaml, the melody model). "
        "audiocraft and the hub checkpoints sample with a guidance scale of 3 "
        "(`cfg_coef=3.0`; generation_config `guidance_scale: 3.0`).",
        why="an untrained model never learnt a conditional or an unconditional distribution: "
        "c and u differ by random amounts, so the KL and entropy traces are arbitrary.",
    ),
    "melody": Fact(
        shows="the output's chroma follows the input tune: similarity to the tune well above "
        "the similarity to another tune.",
        source="The model card of facebook/musicgen-melody reports melody adherence as the "
        "chroma cosine similarity between the input melody and the generated music, the "
        f"metric computed here; the chroma comes from the melody after source separation ({PAPER}).",
        why="random weights ignore what the chroma means, so every similarity is at chance.",
    ),
    "long_form": Fact(
        shows="each window carries the music on from the tail it was prompted with: the seams "
        "are hard to hear.",
        source="audiocraft extends past the 30 s window by re-prompting with the last "
        "30 - extend_stride seconds, with `extend_stride=18` by default "
        "(audiocraft `MusicGen.set_generation_params`).",
        why="on random weights every window is noise, so there is no continuity to hear.",
    ),
    "attention": Fact(
        shows="cross-attention on whole words of the prompt (instruments, genre), differing "
        "from layer to layer.",
        source="MusicGen reads the text through cross-attention on the output of a frozen T5 "
        f"encoder ({PAPER}); T5's tokenizer is a SentencePiece vocabulary of 32,000 word "
        'pieces (Raffel et al. 2020, "Exploring the Limits of Transfer Learning with a '
        'Unified Text-to-Text Transformer").',
        why="the offline tokenizer is trained on a tiny corpus, so it splits words into "
        "single characters, and random weights attend arbitrarily.",
    ),
    "metrics": Fact(
        shows="numbers that describe the music: CLAP adherence that changes with the guidance "
        "scale, and FAD and KL between sets of real music.",
        source=f"{PAPER} (arXiv:2306.05284, Sec. 4) evaluates on MusicCaps: FAD on VGGish "
        "embeddings against the reference recordings, KL between PaSST label distributions of "
        "generated and reference audio, a CLAP text-audio score, and human ratings of overall "
        "quality (OVL) and relevance to the text (REL). The metrics here use other embedders "
        "and no reference set, so their numbers are not the paper's.",
        why="the clips of random weights are noise: CLAP scores, FAD and KL measure noise "
        "against noise, and a FAD near 0 only says that two sets of noise look alike.",
    ),
    "sampling": Fact(
        shows="sampling with top-k 250 gives varied, musical continuations; greedy decoding "
        "tends to get stuck repeating itself.",
        source=f"MusicGen samples with top-k 250 and temperature 1 ({PAPER}; audiocraft's "
        "defaults `top_k=250, top_p=0, temperature=1.0`). The transformers documentation of "
        "MusicGen: sampling gives significantly better results than greedy decoding.",
        why="random weights give step distributions that are sharp or flat for no musical "
        "reason: the knobs still move entropy and repetition, but the audio stays noise and "
        "its repetition says nothing about music.",
    ),
}


def has_random_weights(s: MusicGen) -> bool:
    """True if the loaded model ``s`` has random weights (or is an offline stand-in).

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> has_random_weights(mg.load("tiny"))
    True
    """
    if not hasattr(s, "random_weights"):
        raise TypeError(f"s must be a loaded model (mg.load(...)), got {type(s).__name__}")
    return bool(s.random_weights) or bool(getattr(s, "is_standin", False))


@dataclass(frozen=True)
class Callout:
    """A note for a cell whose result needs trained weights. Renders in Jupyter.

    Examples
    --------
    >>> note = Callout(topic="audio", model="tiny", fact=FACTS["audio"])
    >>> note._repr_markdown_().startswith("> **Needs trained weights.**")
    True
    """

    topic: str
    model: str
    fact: Fact

    def __str__(self) -> str:
        return (
            f"Needs trained weights: {self.model!r} has random weights.\n"
            f"With a trained checkpoint this cell shows {self.fact.shows}\n"
            f"Published: {self.fact.source}\n"
            f"Here: {self.fact.why}"
        )

    __repr__ = __str__

    def _repr_markdown_(self) -> str:
        return (
            f"> **Needs trained weights.** `{self.model}` has random weights.  \n"
            f"> **With a trained checkpoint** this cell shows {self.fact.shows}  \n"
            f"> **Published:** {self.fact.source}  \n"
            f"> **Here:** {self.fact.why}"
        )

    def _repr_html_(self) -> str:
        def fmt(text: str) -> str:
            return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text, quote=False))

        return (
            '<div class="mg-callout" style="border-left:4px solid #1f77b4;background:#f2f7fc;'
            'padding:6px 12px;margin:4px 0;font-size:0.95em">'
            f"<b>Needs trained weights.</b> <code>{html.escape(self.model)}</code> has random "
            f"weights.<br><b>With a trained checkpoint</b> this cell shows {fmt(self.fact.shows)}"
            f"<br><b>Published:</b> {fmt(self.fact.source)}<br><b>Here:</b> {fmt(self.fact.why)}"
            "</div>"
        )


def callout(s: MusicGen, topic: str) -> Callout | None:
    """The note for ``topic`` if ``s`` has random weights, else ``None`` (nothing shows).

    Parameters
    ----------
    s : musicgen_nb.MusicGen
        The loaded model; :attr:`~musicgen_nb.MusicGen.random_weights` decides.
    topic : str
        One of :data:`FACTS`: what kind of result the cell shows.

    Returns
    -------
    Callout or None

    Raises
    ------
    ValueError
        An unknown topic.
    TypeError
        ``s`` is not a loaded model.

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> callout(mg.load("tiny"), "sampling").fact.shows.startswith("sampling with top-k 250")
    True
    """
    if not isinstance(topic, str) or topic not in FACTS:
        raise ValueError(f"topic must be one of {sorted(FACTS)}, got {topic!r}")
    if not has_random_weights(s):
        return None
    return Callout(topic=topic, model=str(getattr(s, "name", "this model")), fact=FACTS[topic])


def scratch(notebook: str, part: str = "run", *, root: str | os.PathLike | None = None) -> Path:
    """A new, empty folder for the files one notebook run (or one exercise) writes.

    Every call gives a fresh folder under the system's temporary directory
    (``tempfile.gettempdir()``, which ``TMPDIR`` moves), in ``musicgen-nb/<notebook>/``.
    So a notebook run twice, or a cell run again out of order, never finds the
    files of an earlier run, and nothing is written beside the notebook.

    Parameters
    ----------
    notebook : str
        The notebook's name, e.g. ``"08_experiments"``: letters, digits, ``_`` and ``-``.
    part : str
        What the folder is for (``"run"``, ``"exercise1"``); same characters.
    root : str or os.PathLike, optional
        Where ``musicgen-nb/<notebook>/`` goes instead of the temporary directory.

    Returns
    -------
    pathlib.Path
        The new folder (it exists and is empty).

    Raises
    ------
    ValueError
        A name with other characters (a path separator, ``..``), checked before anything is created.

    Examples
    --------
    >>> a, b = scratch("doctest", "ex1", root="."), scratch("doctest", "ex1", root=".")
    >>> a != b and a.is_dir() and not any(a.iterdir())
    True
    >>> a.parent.name, a.name.startswith("ex1-")
    ('doctest', True)
    """
    for name, value in (("notebook", notebook), ("part", part)):
        if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", value):
            raise ValueError(f"{name} must be 1-64 letters, digits, '_' or '-', got {value!r}")
    base = Path(tempfile.gettempdir() if root is None else root) / "musicgen-nb" / notebook
    base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{part}-", dir=base))


def solutions(flag: bool) -> bool:
    """True if the solution cells should run: ``flag`` (the ``SOLUTIONS`` parameter) or the env flag.

    A solution cell starts with ``if mg.teaching.solutions(SOLUTIONS):``. In a default
    run (Run All, a handout) it prints one line saying how to run it and returns False,
    so no answer appears under an exercise until the student asks for it: set
    ``SOLUTIONS = True`` in the parameters cell (papermill: ``-p SOLUTIONS True``), or
    ``MUSICGEN_NB_SOLUTIONS=1`` in the environment.

    Parameters
    ----------
    flag : bool
        The notebook's ``SOLUTIONS`` parameter.

    Returns
    -------
    bool

    Raises
    ------
    TypeError
        ``flag`` is not a bool.

    Examples
    --------
    >>> solutions(True)
    True
    >>> solutions(False)  # doctest: +ELLIPSIS
    Solution not run: set SOLUTIONS = True in the parameters cell ...
    False
    """
    if not isinstance(flag, bool):
        raise TypeError(f"flag must be True or False (SOLUTIONS), got {flag!r}")
    if flag or os.environ.get(SOLUTIONS_ENV) == "1":
        return True
    print(
        "Solution not run: set SOLUTIONS = True in the parameters cell "
        f"(or {SOLUTIONS_ENV}=1) and run this cell again."
    )
    return False


def setup() -> tuple[bool, bool]:
    """The notebooks' setup: plotly renderer, Colab's widget manager, and one device line.

    On a CPU the line says that the notebook's model cell, ``mg.teaching.load(MODEL)``
    (:func:`musicgen_nb.lessons.load`), loads int8 weights and prints a decode step time
    measured on that model, here: the model is only known after the parameters cell.

    Returns
    -------
    (in_colab, quick) : tuple of bool
        Running in Colab; ``MUSICGEN_NB_QUICK=1`` (CI's short clips).

    Examples
    --------
    >>> in_colab, quick = setup()  # doctest: +ELLIPSIS
    device: ...
    >>> in_colab
    False
    """
    import plotly.io as pio
    import torch

    in_colab = "google.colab" in sys.modules
    quick = os.environ.get("MUSICGEN_NB_QUICK") == "1"
    if in_colab:  # pragma: no cover - Colab only
        from google.colab import output

        output.enable_custom_widget_manager()
        pio.renderers.default = "colab"
    else:  # JupyterLab draws figures from the plotly mimetype; HTML exports load plotly.js once
        pio.renderers.default = "plotly_mimetype+notebook_connected"
    if torch.cuda.is_available():
        print(f"device: cuda ({torch.cuda.get_device_name(0)})")
        return in_colab, quick
    switch = " For a GPU: Runtime > Change runtime type > T4 GPU, then run all." if in_colab else ""
    print(
        f"device: cpu ({torch.get_num_threads()} threads). mg.teaching.load(MODEL) below loads "
        f"int8 weights and prints a decode step time measured on that model.{switch}"
    )
    return in_colab, quick
