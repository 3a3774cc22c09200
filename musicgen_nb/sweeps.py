"""Parameter sweeps: one prompt, one seed, a grid of settings."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any

    from .generation import Generation
    from .models import MusicGen

_SWEEPABLE = (
    "guidance_scale",
    "temperature",
    "top_k",
    "top_p",
    "duration",
    "negative_prompt",
    "cfg_coef_beta",
)


@dataclass
class SweepResult:
    """The runs of :func:`sweep`: a table and the generations, in grid order.

    Renders in Jupyter as a gallery of players above the table.

    Examples
    --------
    >>> import pandas as pd
    >>> r = SweepResult(table=pd.DataFrame({"temperature": [0.5, 1.0]}))
    >>> len(r), list(r.table["temperature"])
    (0, [0.5, 1.0])
    """

    table: object  # pandas.DataFrame
    generations: list = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.generations)

    def __getitem__(self, i: int) -> Generation:
        """The ``i``-th run's generation (the table's row ``i``).

        Examples
        --------
        >>> import pandas as pd, musicgen_nb as mg
        >>> g = mg.load("tiny").generate("jazz", duration=0.2, seed=0)
        >>> r = SweepResult(table=pd.DataFrame({"seed": [0]}), generations=[g])
        >>> r[0] is g, r[0].codes.shape
        (True, (1, 4, 10))
        """
        return self.generations[i]

    def __repr__(self) -> str:
        return f"SweepResult({len(self)} runs)\n{self.table.to_string(index=False)}"

    def _repr_html_(self) -> str:
        from .players import gallery

        labels = [
            ", ".join(
                f"{k}={row[k]}" for k in self.table.columns if k not in ("seed", "steps_per_s")
            )
            for _, row in self.table.iterrows()
        ]
        items = [
            (g.audio[0], g.sample_rate, label)
            for g, label in zip(self.generations, labels, strict=True)
        ]
        return gallery(items, table=self.table)._repr_html_()


def sweep(
    s: MusicGen, prompt: str | None, *, seed: int = 0, progress: bool = True, **grid: Any
) -> SweepResult:
    """Run every combination of the given settings with one fixed seed.

    Parameters
    ----------
    s : MusicGen
    prompt : str or None
    seed : int
        The same seed for every run, so differences come from the settings.
    progress : bool
        One progress bar over the runs.
    **grid
        Lists of values for any of ``guidance_scale``, ``temperature``,
        ``top_k``, ``top_p``, ``duration``, ``negative_prompt``,
        ``cfg_coef_beta``. A scalar counts as a one-value list. Other
        keyword arguments of ``generate`` (e.g. ``melody``) pass through.

    Returns
    -------
    SweepResult
        ``table`` has one row per run: the swept values, the seed and steps/s.

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> s = mg.load("tiny")
    >>> r = mg.sweep(s, "jazz", seed=0, guidance_scale=[1, 3], duration=1, progress=False)
    >>> r.table["guidance_scale"].tolist()
    [1, 3]
    """
    import pandas as pd

    if not (hasattr(s, "generate") and hasattr(s, "num_codebooks")):
        raise TypeError(
            f"s must be a loaded MusicGen session (s = mg.load(...)), got {type(s).__name__}"
        )
    if isinstance(prompt, (list, tuple)):
        raise TypeError(
            "prompt must be one string (or None) in a sweep; sweep the settings, not the prompts"
        )
    axes, fixed = _split_grid(grid)
    combos = list(itertools.product(*axes.values()))
    for combo in combos:  # every value checked before the first clip is generated
        _check(s, prompt, seed, dict(zip(axes, combo, strict=True)), fixed)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(combos), desc="sweep", unit="run")
    rows, gens = [], []
    for combo in combos:
        settings = dict(zip(axes, combo, strict=True))
        g = s.generate(prompt, seed=seed, progress=False, **settings, **fixed)
        gens.append(g)
        rows.append(dict(settings, seed=g.seed, steps_per_s=round(g.timings["steps_per_s"], 1)))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return SweepResult(table=pd.DataFrame(rows), generations=gens)


def _check(s, prompt, seed, settings: dict, fixed: dict) -> None:
    """The checks ``generate`` makes before any work, for one combination of the sweep."""
    from .generation import make_request

    kwargs = dict(fixed, **settings)
    make_request(s, prompt, seed=seed, progress=False, **kwargs)


def _split_grid(grid: dict) -> tuple[dict, dict]:
    """(swept settings as lists of values, other generate arguments passed through)."""
    axes, fixed = {}, {}
    for key, value in grid.items():
        if key in _SWEEPABLE:
            values = list(value) if isinstance(value, (list, tuple)) else [value]
            if not values:
                raise ValueError(f"{key} must list at least one value")
            axes[key] = values
        else:
            fixed[key] = value
    if not axes:
        raise ValueError(f"give at least one setting to sweep, among {_SWEEPABLE}")
    return axes, fixed
