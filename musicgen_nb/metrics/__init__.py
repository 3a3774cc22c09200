"""The MusicGen model card's metrics: Fréchet distance, CLAP score, KL of tagger labels, chroma.

* :func:`frechet_distance` on embeddings ``[N, D]`` (Fréchet Audio Distance
  when they are audio embeddings), with a symmetric, eigenvalue-based matrix
  square root (:mod:`.frechet`).
* :func:`embed` turns audio into embeddings (:mod:`.embed`): CLAP audio embeddings
  through transformers' ``ClapModel`` (the default; fadtk recommends CLAP for music),
  the MusicGen model's own EnCodec latents (``model="encodec"``, no extra
  weights), or any callable.
* :func:`clap_score`: cosine similarity of CLAP text and audio embeddings (:mod:`.clap`).
* :func:`kl_divergence`: KL between the label distributions an audio tagger
  gives a reference and a generated clip (:mod:`.kl`). The paper uses PaSST, which
  transformers does not ship; the default here is transformers' Audio
  Spectrogram Transformer (AST) fine-tuned on AudioSet, a stand-in with the
  same 527 AudioSet labels. Its numbers are not comparable with PaSST's.
* :func:`chroma_similarity`: the chroma cosine similarity of
  :func:`musicgen_nb.melody.similarity`.
* :func:`metric` and :func:`row_metrics`: per-clip columns for ``run_grid`` (:mod:`.rows`).

Checkpoints load by name (``"laion/larger_clap_music"``,
``"MIT/ast-finetuned-audioset-10-10-0.4593"``, a local directory) for users
with internet access. ``"tiny-clap"`` and ``"tiny-ast"`` are small random
stand-ins built offline: every code path runs, and their numbers mean nothing.
"""

from ..melody import similarity as chroma_similarity
from .clap import DEFAULT_CLAP, clap_score
from .embed import embed
from .frechet import frechet_distance, gaussian_frechet
from .kl import DEFAULT_CLASSIFIER, kl, kl_divergence, label_distribution
from .rows import metric, row_metrics

__all__ = [
    "DEFAULT_CLAP", "DEFAULT_CLASSIFIER", "frechet_distance", "gaussian_frechet", "embed",
    "clap_score", "label_distribution", "kl", "kl_divergence", "chroma_similarity", "metric",
    "row_metrics",
]  # fmt: skip
