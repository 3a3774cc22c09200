"""Attention capture: what the decoder looked at while it generated.

``s.generate(..., attentions=True)`` records, for the captured decoder layers:

- **cross-attention** (text models): for every decode step, how much each text
  token was attended, ``[layers, batch, steps, text_len]``;
- **self-attention**: for every sequence position, how much each earlier
  position was attended, ``[layers, batch, positions, positions]``. For melody
  models the conditioning (``chroma_length`` chroma frames, then the text
  states) is a prefix of this sequence: they have no cross-attention, and the
  first ``prefix_len`` positions are that prefix.

Weights are averaged over the selected heads (``attention_heads=``, default all)
and kept for the conditional guidance branch only (the first ``batch`` rows),
in float16 on the CPU. Only the first window of a long-form generation is
captured.

How it is captured ("eager only for that call")
-----------------------------------------------
The decode engine normally runs fused ``scaled_dot_product_attention``, which
never materialises the weights. For the layers in the capture, and only during
that ``generate`` call, it computes ``softmax(q k^T * scale + mask)`` explicitly
and keeps the weights; every other layer, and every other call, stays on the
fused path. Nothing is switched globally (no ``attn_implementation`` change on
the model), so a capture cannot leak into later generations, and the sampled
codes are the same with or without it.

Size
----
The self-attention matrix grows with the square of the length: a 30 s
generation has about 1,500 positions, so each captured layer and item holds
1,500 x 1,500 float16 values (4.5 MB). :func:`plan_capture` estimates the size
up front and refuses a capture over ``attention_budget_mb`` (default 512 MB),
saying how to shrink it.

Examples
--------
>>> import musicgen_nb as mg
>>> s = mg.load("tiny")
>>> g = s.generate("jazz", duration=1, seed=0, attentions=True, progress=False)
>>> a = g.attentions
>>> a.cross.shape[:3], a.self_attn.shape[2]
((2, 1, 53), 53)
"""

from .plan import DEFAULT_TEXT_LEN, estimate_mb, plan_capture
from .weights import Attentions, collect, text_tokens

__all__ = [
    "DEFAULT_TEXT_LEN",
    "Attentions",
    "collect",
    "estimate_mb",
    "plan_capture",
    "text_tokens",
]
