"""Per-step sampling traces as a tidy :class:`pandas.DataFrame`.

``s.generate(..., trace=True)`` records, at every decode step and for every
codebook, statistics of the final sampling distribution (after guidance,
temperature, top-k and top-p): its entropy, the probability of the token placed,
the five most likely candidates, and (with guidance) the KL divergence between
the conditional and unconditional distributions. :func:`to_frame` turns those
records into one row per sampled token.

Mapping steps to frames (the delay pattern)
-------------------------------------------
Each window of a generation is a delay-pattern sequence: position 0 holds the
special (BOS) token of every codebook and codebook ``k`` holds window frame
``f`` at position ``f + k + 1``. Decode step ``t`` predicts position ``t + 1``,
so at step ``t`` codebook ``k`` samples window frame ``t - k``, exactly
``mg.patterns.build("delay", K, T).layout[t, k]``. At the first and last
``K - 1`` steps some codebooks sit on a special token, and positions of an
audio prompt (or of the previous window's tail, in long-form generation) are
known in advance. Those forced tokens are not sampled, so they get no row.

Columns
-------
``item``, ``step`` (global decode step, counted over all windows in decode
order from 0), ``window``, ``codebook``, ``frame`` (index into ``g.codes``),
``time_s`` (``frame / frame_rate``), ``entropy`` (nats), ``chosen_prob``,
``token`` (the code in ``g.codes``), ``top_ids`` and ``top_probs`` (lists, most
likely first) and ``kl`` (nats, NaN without guidance).

Examples
--------
>>> import musicgen_nb as mg
>>> g = mg.load("tiny").generate("jazz", duration=1, seed=0, trace=True, progress=False)
>>> len(g.trace) == 1 * 4 * 50  # items x codebooks x frames
True
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ._util.checks import check_int

COLUMNS = (
    "item",
    "step",
    "window",
    "codebook",
    "frame",
    "time_s",
    "entropy",
    "chosen_prob",
    "token",
    "top_ids",
    "top_probs",
    "kl",
)


def _stack(values: list) -> np.ndarray:
    import torch

    return torch.stack([v.detach().float().cpu() for v in values]).numpy()


def step_schedule(plan, num_codebooks: int, prefix_known: int = 0) -> pd.DataFrame:
    """Which frame every decode step samples, for every codebook.

    Parameters
    ----------
    plan : list of (int, int)
        Frame windows ``[start, end)`` of the generation (one for a short one).
    num_codebooks : int
    prefix_known : int
        Frames known before the first window starts (the audio prompt).

    Returns
    -------
    pandas.DataFrame
        One row per (step, codebook) that samples a token: ``step`` (global),
        ``window``, ``local_step`` (``t`` inside the window), ``codebook`` and
        ``frame`` (global). Steps are in decode order.

    Examples
    --------
    >>> df = step_schedule([(0, 3)], 2)
    >>> df[["step", "codebook", "frame"]].values.tolist()
    [[0, 0, 0], [1, 0, 1], [1, 1, 0], [2, 0, 2], [2, 1, 1], [3, 1, 2]]
    """
    from .patterns import build

    K = int(num_codebooks)
    parts = []
    offset = 0
    for w, (start, end) in enumerate(plan):
        start, end = int(start), int(end)
        frames = end - start
        known = int(prefix_known) if w == 0 else int(plan[w - 1][1]) - start
        if frames <= 0:
            continue
        layout = build("delay", K, frames).layout  # [frames + K - 1, K]: window frame or -1
        # The window's decode loop runs steps known .. frames + K - 2 (known frames are not sampled).
        local = layout[known:]
        steps = np.broadcast_to(np.arange(known, len(layout))[:, None], local.shape)
        ks = np.broadcast_to(np.arange(K)[None, :], local.shape)
        ok = local >= known
        parts.append(
            pd.DataFrame(
                dict(
                    step=(steps - known + offset)[ok],
                    window=np.full(int(ok.sum()), w),
                    local_step=steps[ok],
                    codebook=ks[ok],
                    frame=(local + start)[ok],
                )
            )
        )
        offset += len(local)
    if not parts:
        return pd.DataFrame(
            dict(step=[], window=[], local_step=[], codebook=[], frame=[]), dtype=np.int64
        )
    return pd.concat(parts, ignore_index=True).astype(np.int64)


def to_frame(
    rec, s, *, batch: int, prompt_frames: int = 0, plan, prefix_known: int = 0, codes=None
) -> pd.DataFrame:
    """Turn a :class:`musicgen_nb.engine.StepRecord` into a tidy DataFrame.

    Parameters
    ----------
    rec : musicgen_nb.engine.StepRecord
        Per-step tensors ``[B, K]`` (``top_*``: ``[B, K, 5]``) in decode order.
    s : MusicGen
        Gives ``num_codebooks`` and ``frame_rate``.
    batch : int
        Number of batch items.
    prompt_frames : int
        Frames of the audio prompt at the start of ``g.codes`` (not sampled).
    plan : list of (int, int)
        The generation's frame windows ``[start, end)``.
    prefix_known : int
        Frames known before the first window's first step (the audio prompt).
    codes : np.ndarray, optional
        ``g.codes`` ``[B, K, frames]``; fills the ``token`` column (see
        :func:`attach_tokens`). Without it ``token`` is -1.

    Returns
    -------
    pandas.DataFrame
        One row per sampled (item, frame, codebook); see the module docstring
        for the columns. Sorted by item, step, codebook. A run that was stopped
        early keeps the steps it recorded.

    Examples
    --------
    >>> import musicgen_nb as mg
    >>> g = mg.load("tiny").generate("jazz", duration=1, seed=0, trace=True, progress=False)
    >>> sorted(g.trace.frame.unique()) == list(range(50))
    True
    """
    K = int(s.num_codebooks)
    batch = int(batch)
    n = len(rec.entropy)
    sched = step_schedule(plan, K, prefix_known if prefix_known is not None else prompt_frames)
    sched = sched[sched.step < n]
    if n == 0 or sched.empty:
        return _empty()
    entropy = _stack(rec.entropy)  # [n, B, K]
    chosen = _stack(rec.chosen_prob)
    top_p = _stack(rec.top_probs)  # [n, B, K, top]
    top_i = np.stack([v.detach().cpu().numpy() for v in rec.top_ids]).astype(np.int64)
    kl = _stack(rec.kl) if len(rec.kl) == n else np.full((n, batch, K), np.nan, np.float32)
    if entropy.shape[1:] != (batch, K):
        raise ValueError(
            f"trace records have shape {entropy.shape[1:]} per step, expected (batch={batch}, K={K})"
        )
    st = sched.step.to_numpy()
    kk = sched.codebook.to_numpy()
    m = len(sched)
    frames = []
    for b in range(batch):
        tp = top_p[st, b, kk]
        ti = top_i[st, b, kk]
        frames.append(
            pd.DataFrame(
                dict(
                    item=np.full(m, b, dtype=np.int64),
                    step=st,
                    window=sched.window.to_numpy(),
                    codebook=kk,
                    frame=sched.frame.to_numpy(),
                    time_s=sched.frame.to_numpy() / float(s.frame_rate),
                    entropy=entropy[st, b, kk].astype(np.float64),
                    chosen_prob=chosen[st, b, kk].astype(np.float64),
                    token=np.full(m, -1, dtype=np.int64),
                    top_ids=[list(map(int, r)) for r in ti],
                    top_probs=[[float(x) for x in r] for r in tp],
                    kl=kl[st, b, kk].astype(np.float64),
                )
            )
        )
    df = pd.concat(frames, ignore_index=True)
    df = df.sort_values(["item", "step", "codebook"], kind="stable").reset_index(drop=True)
    if codes is not None:
        df = attach_tokens(df, codes)
    return df


def attach_tokens(df: pd.DataFrame, codes) -> pd.DataFrame:
    """Fill the ``token`` column from the generated codes.

    Parameters
    ----------
    df : pandas.DataFrame
        A trace from :func:`to_frame`.
    codes : np.ndarray
        ``g.codes`` int ``[B, K, frames]``.

    Returns
    -------
    pandas.DataFrame
        A copy with ``token = codes[item, codebook, frame]``. Rows whose frame is
        not in ``codes`` (the unfinished frames of a stopped run) are dropped.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> df = pd.DataFrame(dict(item=[0, 0], codebook=[0, 1], frame=[0, 0], token=[-1, -1]))
    >>> attach_tokens(df, np.array([[[7], [9]]])).token.tolist()
    [7, 9]
    """
    codes = np.asarray(codes)
    if codes.ndim != 3:
        raise ValueError(f"codes must be [batch, num_codebooks, frames], got shape {codes.shape}")
    keep = (
        (df["frame"] < codes.shape[2])
        & (df["item"] < codes.shape[0])
        & (df["codebook"] < codes.shape[1])
    )
    out = df[keep].copy()
    out["token"] = codes[
        out["item"].to_numpy(), out["codebook"].to_numpy(), out["frame"].to_numpy()
    ].astype(np.int64)
    return out.reset_index(drop=True)


def _empty() -> pd.DataFrame:
    dtypes = dict(
        item="int64", step="int64", window="int64", codebook="int64", frame="int64",
        time_s="float64", entropy="float64", chosen_prob="float64", token="int64",
        top_ids="object", top_probs="object", kl="float64",
    )  # fmt: skip
    return pd.DataFrame({c: pd.Series(dtype=dtypes[c]) for c in COLUMNS})


def select(
    trace: pd.DataFrame, *, item: int = 0, columns=("codebook", "frame", "time_s")
) -> pd.DataFrame:
    """Rows of one batch item, checked, sorted by codebook then frame.

    Parameters
    ----------
    trace : pandas.DataFrame
        A trace from :func:`to_frame` (``g.trace``).
    item : int
        Batch item.
    columns : sequence of str
        Columns the caller needs.

    Returns
    -------
    pandas.DataFrame

    Raises
    ------
    TypeError
        ``trace`` is not a DataFrame (e.g. ``g.trace`` is None: generate with ``trace=True``).
    ValueError
        A column is missing or ``item`` is not in the trace.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame(dict(item=[0], codebook=[0], frame=[0], time_s=[0.0]))
    >>> len(select(df, item=0))
    1
    """
    if trace is None:
        raise TypeError("trace is None: generate with trace=True to record g.trace")
    if not isinstance(trace, pd.DataFrame):
        raise TypeError(f"trace must be a pandas.DataFrame (g.trace), got {type(trace).__name__}")
    need = ["item", *columns]
    missing = [c for c in need if c not in trace.columns]
    if missing:
        raise ValueError(
            f"trace is missing columns {missing}; expected a trace from musicgen_nb.trace.to_frame"
        )
    item = check_int(item, "item", minimum=0)
    items = sorted(int(i) for i in trace["item"].unique())
    if int(item) not in items:
        raise ValueError(f"item {item!r} is not in the trace; items: {items}")
    out = trace[trace["item"] == item]
    return out.sort_values(["codebook", "frame"], kind="stable").reset_index(drop=True)
