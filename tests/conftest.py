"""Shared fixtures: a generated 6-class ImageNet folder, random weights in the real formats, and
analysed runs built from synthetic logits (no torch) for the tests of the analysis layer."""
import contextlib
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))

from analysis import run_analysis  # noqa: E402
from runs import cache  # noqa: E402
from analysis import figure_workers  # noqa: E402
import starter  # noqa: E402
from demo import synthetic  # noqa: E402

# The tests' runs are tiny, and starting figure workers (~0.7 s each) would cost more than they
# save: figures are rendered in the test process, except inside figure_worker_processes().
figure_workers.FIGURE_PROCESSES = 1


@contextlib.contextmanager
def figure_worker_processes():
    """Figures rendered in worker processes, as in a command."""
    previous, figure_workers.FIGURE_PROCESSES = figure_workers.FIGURE_PROCESSES, 4
    try:
        with figure_workers.figure_processes():
            yield
    finally:
        figure_workers.FIGURE_PROCESSES = previous

# What analysis.analyze writes for every run, next to the run's predictions.npz.
RUN_FILES = {"predictions.npz", "metrics.json", "centroids.json", "histogram_precision.png",
             "histogram_recall.png", "confusion_matrix.png", "pseudo_labels.json", "pseudo_labels.png",
             "why.json"}
# Six real ImageNet100 wnids; n01558993 (first) receives the grayscale, CMYK and PNG files.
SUBSET_WNIDS = ["n01558993", "n01692333", "n02085620", "n02108089", "n03017168", "n04229816"]


@pytest.fixture(scope="session")
def demo_inputs(tmp_path_factory):
    """ImageNet100-style root with 6 classes x 3 images, and both random weight files."""
    return synthetic.write_demo_inputs(tmp_path_factory.mktemp("inputs"), wnids=SUBSET_WNIDS,
                                       images_per_class=3, seed=0)


def run_cli(*argv):
    """starter.main with its exit code; raises on failure so the test shows stderr."""
    return starter.main([str(arg) for arg in argv])


@pytest.fixture(scope="session")
def real_runs(tmp_path_factory, demo_inputs):
    """OUT folder after `--model clip` then `--model debiaspl` on the generated folder (CPU)."""
    out = tmp_path_factory.mktemp("out")
    common = ["--data", demo_inputs.data, "--out", out, "--device", "cpu", "--batch-size", 4,
              "--workers", 0]
    assert run_cli("--model", "clip", "--clip-weights", demo_inputs.clip_weights,
                   "--prompts", "single", *common) == 0
    assert run_cli("--model", "debiaspl", "--checkpoint", demo_inputs.debiaspl_checkpoint,
                   *common) == 0
    return out


def synthetic_predictions(model, seed, num_classes=6, images_per_class=10, bias=None):
    """Predictions from random logits (optionally biased towards some classes): no torch."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(num_classes), images_per_class).astype(np.int64)
    logits = rng.normal(size=(len(labels), num_classes)) + 2.0 * np.eye(num_classes)[labels]
    if bias is not None:
        logits = logits + np.asarray(bias)
    wnids = np.array(SUBSET_WNIDS[:num_classes] if num_classes <= len(SUBSET_WNIDS)
                     else [f"n{index:08d}" for index in range(num_classes)])
    return cache.Predictions(
        logits=logits.astype(np.float32), labels=labels,
        paths=np.array([f"{wnids[label]}/img{i}.JPEG" for i, label in enumerate(labels)]),
        wnids=wnids, names=np.array([f"class {w}" for w in wnids]),
        meta={"model": model, "weights": f"{model}-synthetic", "data": "synthetic"})


@pytest.fixture(scope="session")
def analysed_synthetic_runs(tmp_path_factory):
    """OUT with clip (biased towards the first classes) and debiaspl caches and outputs made from
    synthetic logits, analysed once: tests copy it (synthetic_runs) or only read it."""
    out = tmp_path_factory.mktemp("synthetic")
    runs = {"clip": synthetic_predictions("clip", 0, bias=[1.5, 1.0, 0.5, 0, -0.5, -1.0]),
            "debiaspl": synthetic_predictions("debiaspl", 1)}
    for model, predictions in runs.items():
        cache.save_predictions(out / model / "predictions.npz", predictions)
        run_analysis.analyze(predictions, out / model, out)
    return out


@pytest.fixture
def synthetic_runs(analysed_synthetic_runs, tmp_path):
    """A fresh OUT per test with clip and debiaspl caches and outputs made from synthetic logits:
    a copy, since tests change it, and analysing anew would cost ~3 s a test."""
    shutil.copytree(analysed_synthetic_runs, tmp_path, dirs_exist_ok=True)
    return tmp_path


@pytest.fixture
def clip_out(analysed_synthetic_runs, tmp_path):
    """A fresh OUT per test holding a copy of the synthetic clip run only: clip-la and clip-pm
    need nothing else."""
    shutil.copytree(analysed_synthetic_runs / "clip", tmp_path / "clip")
    return tmp_path


@pytest.fixture(scope="session")
def simulated_demo(tmp_path_factory):
    """OUT after the demo's second half: simulated clip and debiaspl caches, their analysis,
    clip-la, clip-pm and the report, with a name and student ID."""
    out = tmp_path_factory.mktemp("simulated")
    args = starter.build_parser().parse_args(["--demo", "--name", "Ada Lovelace",
                                              "--student-id", "12345678"])
    with figure_worker_processes():  # 100-class figures, as in a real run: worth the workers
        starter.analyse_simulated_runs(args, out)
    return out
