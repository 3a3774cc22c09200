"""Generation: every check up front, the windows over the delay pattern, decoding, the result.

``generate(s, prompts, **options)`` is ``run(s, make_request(s, prompts, **options))``:

- :mod:`.checks` and :mod:`.request`: every argument and input size is checked before
  any work, into a :class:`Request`;
- :mod:`.windows` and :mod:`.loop`: the plan of (long-form) windows and the decode
  loop of :class:`musicgen_nb.engine.Decoder` over the delay pattern;
- :mod:`.decode`: the stitched codes decoded once with EnCodec, in bounded pieces;
- :mod:`.result`: the :class:`Generation`, and saving it with provenance;
- :mod:`.pipeline`: :func:`generate` and :func:`run`, which chain the steps above.

Examples
--------
>>> import musicgen_nb as mg
>>> from musicgen_nb.generation import make_request, run
>>> s = mg.load("tiny")
>>> run(s, make_request(s, "jazz", duration=1, seed=1, progress=False)).audio.shape
(1, 1, 32000)
"""

from .checks import MAX_DURATION, SEED_LIMIT, validate
from .decode import DECODE_CHUNK, DECODE_CONTEXT, decode_long
from .pipeline import generate, run
from .request import Request, make_request
from .result import FORMATS, Generation, check_save, versions

__all__ = [
    "DECODE_CHUNK",
    "DECODE_CONTEXT",
    "FORMATS",
    "MAX_DURATION",
    "SEED_LIMIT",
    "Generation",
    "Request",
    "check_save",
    "decode_long",
    "generate",
    "make_request",
    "run",
    "validate",
    "versions",
]
