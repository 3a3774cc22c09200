"""Plotly figure builders: pure functions, data in -> ``go.Figure`` out.

None of them calls ``.show()`` or runs a model. Each caps the data it sends
to the browser and says so in the figure title when it downsamples.

Examples
--------
>>> import numpy as np
>>> from musicgen_nb import viz
>>> fig = viz.token_grid(np.zeros((4, 50), dtype=np.int64))
>>> fig.layout.xaxis.title.text
'time (s)'
"""

from .bars import bars
from .chroma import chroma
from .codebook_usage import codebook_usage
from .cross_attention import cross_attention, cross_attention_by_layer
from .divergence import divergence
from .entropy import entropy
from .guidance import guidance_comparison
from .loss import loss_figure
from .pattern_grid import pattern_grid
from .pipeline import pipeline
from .self_attention import self_attention
from .spectrogram import spectrogram
from .token_grid import token_grid
from .topk import topk
from .waveform import waveform

__all__ = [
    "bars",
    "chroma",
    "codebook_usage",
    "cross_attention",
    "cross_attention_by_layer",
    "divergence",
    "entropy",
    "guidance_comparison",
    "loss_figure",
    "pattern_grid",
    "pipeline",
    "self_attention",
    "spectrogram",
    "token_grid",
    "topk",
    "waveform",
]
