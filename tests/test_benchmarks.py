"""Smoke tests: every benchmark script runs at tiny sizes and prints its result table, so that a
refactor cannot break one silently. They assert that it ran, never how fast. Each runs its
main() in this process (the interpreter's start and imports already paid; what it starts as
subprocesses, it starts); all are marked slow."""
import contextlib
import importlib
import re
import shlex
import sys

import pytest

import starter
from conftest import PROJECT_DIR, hang_guard, keeping_torch_threads
from test_layout import module_files

BENCHMARKS = sorted(path.name for path in (PROJECT_DIR / "benchmarks").glob("bench_*.py"))
RESULTS = PROJECT_DIR / "benchmarks" / "RESULTS.md"
# Spans of RESULTS.md that name an output file, not code: checked by no one.
OUTPUT_SUFFIXES = (".npz", ".png", ".html", ".json", ".pdf")


@contextlib.contextmanager
def benchmarks_importable():
    sys.path.insert(0, str(PROJECT_DIR / "benchmarks"))
    try:
        yield
    finally:
        sys.path.remove(str(PROJECT_DIR / "benchmarks"))


def benchmark_module(script):
    with benchmarks_importable():
        return importlib.import_module(script.removeprefix("benchmarks/").removesuffix(".py"))


@pytest.fixture
def run_benchmark(capfd):
    """run_benchmark(script, *options): what the benchmark's main printed, its subprocesses'
    output included. torch's thread count, which a benchmark may set, is restored."""
    def run(script, *options):
        capfd.readouterr()
        with keeping_torch_threads():
            benchmark_module(script).main([str(option) for option in options])
        return capfd.readouterr().out
    return run


def test_every_benchmark_has_its_smoke_test():
    tested = {name.removeprefix("test_").removesuffix("_benchmark_runs")
              for name in globals() if name.endswith("_benchmark_runs")}
    assert {name.removeprefix("bench_").removesuffix(".py") for name in BENCHMARKS} == tested


def results_spans():
    """RESULTS.md's inline code (joined where it wraps) and the lines of its indented code
    blocks, comments dropped."""
    text = RESULTS.read_text()
    spans = [" ".join(span.split()) for span in re.findall(r"`([^`]+)`", text)]
    blocks = [line.split("  #")[0].strip() for line in text.splitlines() if line.startswith("    ")]
    return spans + [line for line in blocks if line]


def check_command(command):
    """A `python ...` command of RESULTS.md: its script or test files exist, and the script's
    own parser (starter.py's, a benchmark's) takes its options."""
    _, *words = shlex.split(command)
    if words[:2] == ["-m", "pytest"]:
        files = [word for word in words if word.endswith(".py")]
        assert files and all((PROJECT_DIR / file).is_file() for file in files), command
        return
    script, *options = words
    assert (PROJECT_DIR / script).is_file(), command
    if script == "starter.py":
        starter.build_parser().parse_args(options)
    else:
        assert script.startswith("benchmarks/bench_"), command
        benchmark_module(script).parse_args(options)


def resolve(dotted):
    """The object a dotted name of the project's code names: a module, then attributes."""
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        module = ".".join(parts[:split])
        if module in module_files():
            found = importlib.import_module(module)
            for attribute in parts[split:]:
                found = getattr(found, attribute)
            return found
    raise AssertionError(f"{dotted} names no module of the project")


def test_results_name_commands_code_and_files_that_exist():
    spans = results_spans()
    commands = [span for span in spans if span.startswith("python ")]
    assert len(commands) >= len(BENCHMARKS)
    for command in commands:
        check_command(command)
    dotted = [span for span in spans if re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+", span)
              and not span.endswith(OUTPUT_SUFFIXES + (".py", ".md", ".txt"))]
    assert dotted
    for name in dotted:
        resolve(name)
    for path in [span for span in spans if re.fullmatch(r"[\w./-]+\.(py|md|txt|tsv)", span)]:
        found = (PROJECT_DIR / path).resolve()
        assert found.is_relative_to(PROJECT_DIR) and found.is_file(), f"{path} is not a file of the repository"
    # Each section names the command behind its numbers.
    for section in RESULTS.read_text().split("\n## ")[1:]:
        assert "`python " in section or "\n    python " in section, section.split("\n")[0]


@pytest.mark.slow
def test_analysis_benchmark_runs(run_benchmark):
    # debiaspl alone: the costlier path (clip analysed first, untimed), one timed model.
    printed = run_benchmark("bench_analysis.py", "--classes", "4", "--images-per-class", "2", "--repeats", "1",
                            "--models", "debiaspl")
    assert "=== 8 images x 4 classes (budget none per model) ===" in printed
    assert "\ndebiaspl: full command " in printed and "\nclip: full command " not in printed
    for stage in ("load predictions.npz", "centroids: both groupings", "render + save the four PNGs"):
        assert printed.count(stage) == 1
    assert "clip PNG sizes: confusion_matrix.png" in printed
    assert "[torch was imported!]" not in printed


@pytest.mark.slow
def test_inference_benchmark_runs(run_benchmark):
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


@pytest.mark.slow
def test_concepts_benchmark_runs(run_benchmark):
    printed = run_benchmark("bench_concepts.py", "--classes", "10", "--images-per-class", "10",
                            "--dimension", "32", "--planted", "1", "--repeats", "1")
    assert "100 images x 32 dimensions, 10 classes" in printed and "detection (warm-started" in printed


@pytest.mark.slow
def test_large_cache_benchmark_runs(run_benchmark):
    printed = run_benchmark("bench_large_cache.py", "--images", "300", "--classes", "12",
                            "--commands", "clip --from-cache", "clip-pm")
    assert "SIMULATED cache: 300 images x 12 classes" in printed
    for command in ("clip --from-cache", "clip-pm"):
        assert sum(line.startswith(command) and " GB " in line for line in printed.splitlines()) == 1
    assert "\nclip-la " not in printed and "\nreport " not in printed


def test_a_measured_command_may_print_more_than_a_pipe_holds(tmp_path):
    measure = benchmark_module("bench_large_cache.py").measure
    with hang_guard(120):  # a pipe that nobody read filled at 64 KB, and the command waited forever
        seconds, _, _ = measure(["-c", "print('x' * 300_000)"], tmp_path)
    assert seconds > 0


@pytest.mark.slow
def test_study_benchmark_runs(run_benchmark):
    printed = run_benchmark("bench_study.py", "--runs", "3", "--distinct", "2", "--images", "120",
                            "--classes", "6", "--dimension", "8")
    assert "SIMULATED runs: 3 of 120 images x 6 classes (2 analysed, the others copies)" in printed
    assert re.search(r"\nstudy: [0-9.]+ s \(best of [0-9.]+\), (within|OVER) <= 60 s; study.pdf ", printed)


@pytest.mark.slow
def test_distributed_benchmark_runs(run_benchmark):
    printed = run_benchmark("bench_distributed.py", "--images", "4", "--classes", "2", "--processes", "1",
                            "--workers", "0", "--batch-size", "2", "--chunk-size", "2",
                            "--merge-images", "50", "--merge-classes", "3")
    assert "processes: 4 photo-like JPEGs, 2 classes" in printed
    assert "  1 process(es): 4 images in " in printed and "cache identical to the first run's" in printed
    assert "merge: 1 parts of 50 x 3 " in printed
    assert "merged into predictions.npz" in printed and "peak anonymous memory of the merging process" in printed


@pytest.mark.slow
def test_explorer_benchmark_runs(run_benchmark):
    from explorer.browser import missing_browser
    missing = missing_browser()
    if missing:
        pytest.skip(f"no headless Chromium: {missing}")
    printed = run_benchmark("bench_explorer.py", "--classes", "2", "--images-per-class", "2", "--repeats", "1")
    assert "=== 4 images x 2 classes, runs clip, debiaspl, clip-la, clip-pm ===" in printed
    for line in ("write_explorer: ", "explorer.html: ", "first view drawn, fresh browser: ",
                 "first view drawn, reopened in the same browser: "):
        assert printed.count("\n" + line) == 1, line


@pytest.mark.slow
def test_backbones_benchmark_runs(run_benchmark):
    printed = run_benchmark("bench_backbones.py", "--architectures", "ViT-B-32", "--batch-size", "1",
                            "--repeats", "1", "--threads", "1")
    assert "fp32, batch of 1 random images, best of 1" in printed
    rows = [line for line in printed.splitlines() if line.startswith("ViT-B-32 ")]
    assert len(rows) == 1 and rows[0].count(" ms (") == 1 and "224x224" in rows[0]


@pytest.mark.slow
def test_layouts_benchmark_runs(run_benchmark):
    printed = run_benchmark("bench_layouts.py", "--images", "20", "--shards", "3", "--per-shard", "10")
    assert "=== 20 JPEGs of 500 x 375 in 4 layouts" in printed
    for layout in ("folder", "shards", "parquet", "flat"):
        assert f"\n{layout} " in printed
    assert "indexed 30 samples of 3 shards in " in printed and "indexing nothing peaks at" in printed


@pytest.mark.slow
def test_rescore_benchmark_runs(run_benchmark):
    printed = run_benchmark("bench_rescore.py", "--images", "20", "--classes", "3")
    assert "=== --rescore of 20 images x 3 classes, 1 template(s), CPU ===" in printed
    assert "whole rescore: " in printed and "CLIP's text encoder: " in printed
