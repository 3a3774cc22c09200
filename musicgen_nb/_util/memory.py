"""Measured peak memory of each architecture (random weights), shown by ``list_models()``.

The figures come from ``benchmarks/bench_memory.py`` (batch 1, guidance 3,
30 s of audio; see ``benchmarks/README.md`` for the arithmetic):

* ``peak_rss_gb_fp32_30s``: **measured** peak resident memory of the whole
  process while generating 30 s in fp32 on the CPU (small only; NaN elsewhere).
* ``est_peak_gb_fp32_30s`` / ``est_peak_gb_fp16_30s``: **estimates**, weights +
  static key/value cache + the overhead and EnCodec activations measured on
  small. The model was checked against medium measured at 2 s (estimated
  8.74 GB, measured 8.74 GB). fp16 keeps the host overhead, so it is an upper
  bound for a GPU.
* ``kv_cache_gb_fp16_30s``: the static key/value cache alone in fp16.

Re-run the benchmark to refresh them (measured on a 2-core CPU, torch 2.13,
transformers 5.24).

:func:`available_bytes` is the memory the size checks compare their estimates with.
"""

#: Rows merged into ``mg.list_models()`` on ``name``.
MEASURED: list[dict] = [
    dict(name="small", peak_rss_gb_fp32_30s=4.64, est_peak_gb_fp32_30s=4.64, est_peak_gb_fp16_30s=3.17,
         kv_cache_gb_fp16_30s=0.30),
    dict(name="medium", est_peak_gb_fp32_30s=11.49, est_peak_gb_fp16_30s=6.60, kv_cache_gb_fp16_30s=0.89),
    dict(name="large", est_peak_gb_fp32_30s=17.76, est_peak_gb_fp16_30s=9.73, kv_cache_gb_fp16_30s=1.18),
    dict(name="melody", est_peak_gb_fp32_30s=9.98, est_peak_gb_fp16_30s=5.84, kv_cache_gb_fp16_30s=1.04),
]  # fmt: skip


def available_bytes() -> int | None:
    """Memory this process may still use: RAM available, and the address-space limit if set.

    The smaller of ``MemAvailable`` (``/proc/meminfo``) and what ``RLIMIT_AS``
    leaves above the current address space; None when neither is known. Shared
    by the size checks of :mod:`musicgen_nb.generation` and
    :func:`musicgen_nb.audio.resample` (this module imports nothing, so any
    module may use it).
    """
    import os
    import resource

    limits = []
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    limits.append(int(line.split()[1]) * 1024)
    except OSError:
        pass
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        try:
            with open("/proc/self/statm") as f:
                used = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            used = 0
        limits.append(max(0, soft - used))
    return min(limits) if limits else None
