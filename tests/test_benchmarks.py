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
    printed = run_benchmark("analysis.py", "--classes", "4", "--images-per-class", "2", "--repeats", "1")
    assert "=== 8 images x 4 classes (budget none per model) ===" in printed
    for model in ("clip", "debiaspl"):
        assert f"\n{model}: full command " in printed
    for stage in ("load predictions.npz", "centroids: both groupings", "render + save confusion_matrix.png"):
        assert printed.count(stage) == 2
    assert "[torch was imported!]" not in printed
