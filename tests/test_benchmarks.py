"""Smoke tests: every benchmark script runs at tiny sizes and prints its result table, so that a
refactor cannot break one silently. They assert that it ran, never how fast."""
import subprocess
import sys

from conftest import PROJECT_DIR


def run_benchmark(script, *options):
    result = subprocess.run([sys.executable, str(PROJECT_DIR / "benchmarks" / script), *options],
                            cwd=PROJECT_DIR, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_analysis_benchmark_runs():
    # debiaspl alone: the costlier path (clip analysed first, untimed), one timed model.
    printed = run_benchmark("bench_analysis.py", "--classes", "4", "--images-per-class", "2", "--repeats", "1",
                            "--models", "debiaspl")
    assert "=== 8 images x 4 classes (budget none per model) ===" in printed
    assert "\ndebiaspl: full command " in printed and "\nclip: full command " not in printed
    for stage in ("load predictions.npz", "centroids: both groupings", "render + save the four PNGs"):
        assert printed.count(stage) == 1
    assert "clip PNG sizes: confusion_matrix.png" in printed
    assert "[torch was imported!]" not in printed


def test_inference_benchmark_runs():
    printed = run_benchmark("bench_inference.py", "--images", "2", "--classes", "1", "--rounds", "1",
                            "--workers", "0", "--models", "clip", "--device", "cpu")
    assert "inputs: 2 JPEGs over 1 classes" in printed
    for row in ("decode limit (DataLoader, no model)", "bare forward, fp32", "pipeline, fp32",
                "pipeline / min(decode limit, bare forward) = ", "logits of 2 images vs a CPU fp32 run",
                "    cpu fp32 "):
        assert row in printed
    assert "bare forward, fp16" not in printed  # a CPU has fp32 only
    for phase in ("import torch + torchvision", "import open_clip", "model build (weights)",
                  "clip's text classifier (first run; then cached)", "image loop: first batch ready",
                  "image loop: the rest", "figures: render + save PNGs", "other (scan"):
        assert phase in printed.split("whole commands")[1]


def test_concepts_benchmark_runs():
    printed = run_benchmark("bench_concepts.py", "--classes", "10", "--images-per-class", "10",
                            "--dimension", "32", "--planted", "1", "--repeats", "1")
    assert "100 images x 32 dimensions, 10 classes" in printed and "detection (warm-started" in printed


def test_large_cache_benchmark_runs():
    printed = run_benchmark("bench_large_cache.py", "--images", "300", "--classes", "12",
                            "--commands", "clip --from-cache", "clip-pm")
    assert "SIMULATED cache: 300 images x 12 classes" in printed
    for command in ("clip --from-cache", "clip-pm"):
        assert sum(line.startswith(command) and " GB " in line for line in printed.splitlines()) == 1
    assert "\nclip-la " not in printed and "\nreport " not in printed


def test_layouts_benchmark_runs():
    printed = run_benchmark("bench_layouts.py", "--images", "20", "--shards", "3", "--per-shard", "10")
    assert "=== 20 JPEGs of 500 x 375 in 4 layouts" in printed
    for layout in ("folder", "shards", "parquet", "flat"):
        assert f"\n{layout} " in printed
    assert "indexed 30 samples of 3 shards in " in printed and "indexing nothing peaks at" in printed


def test_rescore_benchmark_runs():
    printed = run_benchmark("bench_rescore.py", "--images", "20", "--classes", "3")
    assert "=== --rescore of 20 images x 3 classes, 1 template(s), CPU ===" in printed
    assert "whole rescore: " in printed and "CLIP's text encoder: " in printed
