"""The benchmark scripts run end to end on the tiny checkpoint (smoke: figures, not speed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(script: str, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_bench_generate_rows_and_fidelity(tmp_path):
    out = tmp_path / "bench.json"
    text = _run(
        "bench_generate.py", "--model", "tiny", "--steps", "12", "--in-process",
        "--precisions", "fp32,bf16,int8,int8-fbgemm,int4", "--e2e-seconds", "0.5", "--json", str(out),
    )  # fmt: skip
    rows = {(r["impl"], r["precision"]): r for r in json.loads(out.read_text())["rows"]}
    assert set(rows) == {
        ("transformers", "fp32"),
        ("engine", "fp32"),
        ("engine", "bf16"),
        ("engine", "int8"),
        ("engine", "int8-fbgemm"),  # int8 with fbgemm's linears: the fallback, side by side
        ("engine", "int4"),
    }
    assert all(
        "error" not in r and r["steps"] == 12 and r["steps_per_s"] > 0 for r in rows.values()
    )
    assert rows["engine", "fp32"]["token_agree_vs_transformers"] == 1.0
    for prec in ("bf16", "int8", "int8-fbgemm"):
        r = rows["engine", prec]
        assert 0 <= r["tf_mean_kl"] < 0.05 and r["tf_top1_agree"] > 0.8
    # 4-bit weights: far from fp32 on tiny (64 wide, random weights), and further than int8
    assert rows["engine", "int8"]["tf_mean_kl"] < rows["engine", "int4"]["tf_mean_kl"] < 1.0
    assert rows["engine", "int8"]["e2e_long_audio_s"] == 0.5
    assert "tokens = hf: 100.0%" in text


def test_profile_step_splits_the_step():
    text = _run("profile_step.py", "--model", "tiny", "--steps", "8", "--top", "200")
    lines = {ln.split()[0]: ln for ln in text.splitlines() if ln.strip()}
    for part in ("linears", "self_attention", "cross_attention", "rest"):
        assert float(lines[part].split()[1]) >= 0
    assert "GB/s" in lines["linears"] and "musicgen_nb::linear_int8" in text
    # int8: the fused kernels are counted as self- and cross-attention
    assert "musicgen_nb::attend_int8" in text and float(lines["self_attention"].split()[1]) > 0
    assert "musicgen_nb::attend_cross" in text  # (tiny: its share may round to 0.00 ms)
    four = _run("profile_step.py", "--model", "tiny", "--precision", "int4", "--steps", "8")
    assert "precision=int4" in four and "musicgen_nb::linear_int8" in four


def test_codec_overlap_compares_both_ways():
    text = _run(
        "bench_codec_overlap.py", "--model", "tiny", "--seconds", "1", "--rounds", "1",
        "--chunk", "20", "--context", "5",
    )  # fmt: skip
    for kind in ("sequential", "overlapped"):
        line = next(ln for ln in text.splitlines() if ln.startswith(f"{kind} ") and "median" in ln)
        assert float(line.split("audio ready median ")[1].split()[0]) > 0
    assert "sequential / overlapped per round" in text


def test_gpu_check_runs_end_to_end_on_the_cpu(tmp_path):
    """benchmarks/gpu_check.py with --device cpu and the tiny checkpoint: every row is there,
    the paths (stream, grid row, fine-tune step) ran, and auto on a faked T4 is fp16."""
    out = tmp_path / "gpu_check.json"
    text = _run(
        "gpu_check.py", "--device", "cpu", "--sizes", "tiny", "--peak-model", "tiny",
        "--peak-seconds", "1", "--steps", "12", "--agree-steps", "12", "--json", str(out),
    )  # fmt: skip
    rows = {r["check"]: r for r in json.loads(out.read_text())["rows"]}
    assert rows["steps/s transformers"]["value"] > 0
    engine = [r for c, r in rows.items() if c.startswith("steps/s engine")]
    assert engine and any(isinstance(r["value"], float) and r["value"] > 0 for r in engine)
    assert rows["tokens = generate (fp32)"]["value"] == "100.0%"
    assert rows["peak GB, 1 s"]["value"] > 0 and rows["host syncs/step"]["value"] == "n/a (cpu)"
    assert all(rows[c]["value"] == "ok" for c in ("stream", "grid row", "fine-tune step"))
    assert (
        rows["auto on sm75 (faked T4)"]["value"] == "fp16" and rows["auto here"]["value"] == "fp32"
    )
    assert "auto on sm75" in text
