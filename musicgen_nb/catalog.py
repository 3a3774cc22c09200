"""The table of known checkpoints behind :func:`musicgen_nb.list_models`, without torch.

``mg.list_models()`` used to import torch and transformers (11-20 s) to print a table of
facts. Those facts are stored: the architectures in ``checkpoints/configs/*.json`` (read
here as plain JSON files) and their parameter counts in :data:`PARAMS`, which
``tests/test_catalog.py`` checks against the models built on the meta device. This module
imports only the standard library and pandas.

Examples
--------
>>> OFFLINE_PRESETS
('tiny', 'tiny-melody', 'tiny-stereo', 'tiny-stereo-melody')
>>> PARAMS["small"]
(586884674, 419584000)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from ._util.memory import MEASURED

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["OFFLINE_PRESETS", "PARAMS", "list_models"]

#: The offline checkpoints (random weights, a few MB), the same as
#: :data:`musicgen_nb.checkpoints.OFFLINE` (a test checks it).
OFFLINE_PRESETS = ("tiny", "tiny-melody", "tiny-stereo", "tiny-stereo-melody")
#: (total, decoder) parameter counts of each known architecture, as counted by
#: :func:`musicgen_nb.checkpoints.loading.param_counts` on the meta device (a test checks them).
PARAMS = {
    "small": (586884674, 419584000),
    "medium": (2005251138, 1837556736),
    "large": (3423470146, 3255382016),
    "melody": (1552138818, 1384424448),
    "melody-large": (2617993794, 2449879040),
    "stereo-small": (603665986, 436365312),
    "stereo-medium": (2030423106, 1862728704),
    "stereo-large": (3457032770, 3288944640),
    "stereo-melody": (1577310786, 1409596416),
    "stereo-melody-large": (2651556418, 2483441664),
}
_CONFIGS = Path(__file__).resolve().parent / "checkpoints" / "configs"


def _row(spec: dict) -> dict:
    """One row of :func:`list_models`: the facts of a stored architecture."""
    cfg, meta = spec["config"], spec["meta"]
    total, decoder = PARAMS[meta["name"]]
    codec = cfg["audio_encoder"]
    hop = 1
    for r in codec["upsampling_ratios"]:
        hop *= r
    return dict(
        name=meta["name"],
        checkpoint=meta["checkpoint"],
        params=total,
        decoder_params=decoder,
        melody=meta["melody"],
        stereo=meta["stereo"],
        sample_rate=codec["sampling_rate"],
        frame_rate=codec["sampling_rate"] // hop,
        num_codebooks=cfg["decoder"]["num_codebooks"],
        max_duration=meta["max_duration"],
        fp32_gb=round(total * 4 / 1e9, 2),
        fp16_gb=round(total * 2 / 1e9, 2),
    )


def list_models() -> pd.DataFrame:
    """List the MusicGen checkpoints this toolkit knows, in well under a second.

    It reads stored facts only: no torch, no transformers, no network.

    Returns
    -------
    pandas.DataFrame
        One row per checkpoint, in the order small, medium, large, melody, ...:
        ``name``, ``checkpoint`` (hub id), ``params`` and ``decoder_params``,
        ``melody``, ``stereo``, ``sample_rate``, ``frame_rate``, ``num_codebooks``,
        ``max_duration``, the weight memory ``fp32_gb``/``fp16_gb``, and the peak
        memory of a 30 s generation where it was measured or estimated.

    See Also
    --------
    OFFLINE_PRESETS : the offline checkpoints ``mg.load`` also takes.

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> df = mg.list_models()
    >>> df.set_index("name").loc["small", "checkpoint"]
    'facebook/musicgen-small'
    >>> list(df.name[:3])
    ['small', 'medium', 'large']
    """
    import pandas as pd

    specs = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(_CONFIGS.glob("*.json"))]
    rank = {name: i for i, name in enumerate(PARAMS)}
    specs.sort(key=lambda s: (rank.get(s["meta"]["name"], len(rank)), s["meta"]["name"]))
    df = pd.DataFrame([_row(spec) for spec in specs])
    if MEASURED:
        df = df.merge(pd.DataFrame(MEASURED), on="name", how="left")
    return df
