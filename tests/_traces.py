"""Synthetic traces and attentions of the right layout (no model), for the viz tests."""

import numpy as np
import pandas as pd

from musicgen_nb.attention import Attentions
from musicgen_nb.trace import COLUMNS, step_schedule


def synthetic_trace(frames: int, K: int = 2, kl: bool = True) -> pd.DataFrame:
    """A trace of the right layout with random values (no model)."""
    rng = np.random.default_rng(0)
    sched = step_schedule([(0, frames)], K)
    n = len(sched)
    top = np.sort(rng.dirichlet(np.ones(8), n)[:, :5], axis=1)[:, ::-1]
    return pd.DataFrame(
        dict(
            item=0,
            step=sched.step,
            window=sched.window,
            codebook=sched.codebook,
            frame=sched.frame,
            time_s=sched.frame / 50,
            entropy=rng.uniform(0, 5, n),
            chosen_prob=top[:, 0],
            token=rng.integers(0, 2048, n),
            top_ids=[list(r) for r in rng.integers(0, 2048, (n, 5))],
            top_probs=[list(r) for r in top],
            kl=rng.uniform(0, 1, n) if kl else np.nan,
        )  # fmt: skip
    )[list(COLUMNS)]


def trace_rows(df, item, k):
    """The rows of one item and codebook, in frame order."""
    return df[(df["item"] == item) & (df.codebook == k)].sort_values("frame")


def synthetic_attentions(
    steps: int, tokens: int = 6, layers=(0, 3, 5), prefix: int = 0
) -> Attentions:
    """Random row-stochastic attentions of the right shapes (no model)."""
    rng = np.random.default_rng(0)
    L, n = len(layers), prefix + steps
    cross = rng.dirichlet(np.ones(tokens), (L, 1, steps)).astype(np.float16)
    raw = np.tril(rng.uniform(0.1, 1, (L, 1, n, n)))
    self_attn = (raw / raw.sum(-1, keepdims=True)).astype(np.float16)
    return Attentions(
        cross=None if prefix else cross, self_attn=self_attn, layers=list(layers), heads=None,
        text_tokens=[[f"t{i}" for i in range(tokens)]], frame_rate=50, prefix_len=prefix,
        chroma_len=prefix - tokens if prefix else 0,
    )  # fmt: skip
