"""Measured peak memory of each architecture (random weights), shown by ``list_models()``.

The figures come from ``benchmarks/bench_memory.py`` (fp32 on CPU: peak RSS while
generating 30 s; fp16 is estimated from the weight bytes plus the same activations,
halved). Re-run the benchmark to refresh them.
"""

#: Rows merged into ``mg.list_models()`` on ``name``; empty until measured.
MEASURED: list[dict] = []
