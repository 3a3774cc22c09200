"""Short test clips for the metrics tests: noisy sine tones, one per clip."""

from __future__ import annotations

import numpy as np


def clips(n=3, sr=32000, seconds=1.0, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    freqs = rng.uniform(200, 2000, size=n)
    tone = np.sin(2 * np.pi * freqs[:, None] * t)[:, None, :]
    return (0.3 * tone + 0.05 * rng.normal(size=tone.shape)).astype(np.float32)
