"""Shared fixtures: a generated 6-class ImageNet folder, random weights in the real formats, and
analysed runs built from synthetic logits (no torch) for the tests of the analysis layer.

Shared fixtures are read-only to the tests: a test that writes copies first. Each shared folder
is registered with `read_only_folders`, which fails the session at its end if one changed."""
import contextlib
import hashlib
import os
import pickle
import shutil
import signal
import sys
import time
from pathlib import Path

if "PYTEST_XDIST_WORKER" in os.environ:
    # One worker per CPU (pytest.ini): each computes on one thread (torch, OpenMP, BLAS, and the
    # commands it starts), since the threads of two workers would only contend for the same CPUs,
    # spinning while they wait. Set before numpy, scikit-learn or torch is loaded, which read it
    # (in a worker; a process it spawns, which imports this file again, keeps what it inherited).
    os.environ["OMP_NUM_THREADS"] = os.environ["OPENBLAS_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"

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


@contextlib.contextmanager
def hang_guard(seconds):
    """Fails the test when the block has not returned after `seconds` (SIGALRM; main thread on
    Unix only): proof that a wait which should end by itself does, without timing it. A loaded
    machine only makes the block slower, never near this deadline."""
    def hung(signum, frame):
        raise AssertionError(f"still waiting after {seconds} s: the wait did not end by itself")
    previous = signal.signal(signal.SIGALRM, hung)
    # The test's own deadline (pytest-timeout's, pytest.ini) runs on the same timer: set again after.
    outer, _ = signal.setitimer(signal.ITIMER_REAL, seconds)
    start = time.monotonic()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer:
            signal.setitimer(signal.ITIMER_REAL, max(outer - (time.monotonic() - start), 0.001))


@contextlib.contextmanager
def imports_of(*libraries):
    """Yields the list of every import statement of `libraries` (or their submodules) run inside
    the block, whether or not the module was loaded already: in this process, the proof that a
    path never asks for them, without a fresh interpreter's start."""
    import builtins
    asked_for, import_anything = [], builtins.__import__

    def recording_import(name, *args, **kwargs):
        if name.partition(".")[0] in libraries:
            asked_for.append(name)
        return import_anything(name, *args, **kwargs)
    builtins.__import__ = recording_import
    try:
        yield asked_for
    finally:
        builtins.__import__ = import_anything


def folder_digests(folder):
    """{path relative to folder: (sha256 of its content, its inode and modification time)} of
    every file below it: a file written again with the same bytes counts as written too."""
    digests = {}
    for path in sorted(Path(folder).rglob("*")):
        if path.is_file():
            with path.open("rb") as file:  # streamed: the random weight files are 100s of MB
                content = hashlib.file_digest(file, "sha256").hexdigest()
            status = path.stat()
            digests[path.relative_to(folder).as_posix()] = (content, status.st_ino, status.st_mtime_ns)
    return digests


class ReadOnlyFolders:
    """Folders that fixtures share between tests, with their content when they were made."""

    def __init__(self):
        self.digests = {}

    def register(self, folder):
        self.digests[Path(folder)] = folder_digests(folder)
        return folder

    def changes(self):
        """['folder: added/removed/changed/written again file', ...] since each folder was
        registered."""
        found = []
        for folder, before in self.digests.items():
            after = folder_digests(folder)
            for name in sorted(before.keys() | after.keys()):
                if before.get(name) != after.get(name):
                    what = ("added" if name not in before else "removed" if name not in after
                            else "changed" if before[name][0] != after[name][0] else "written again")
                    found.append(f"{folder}: {what} {name}")
        return found


# Fixtures that run a model or a browser, or make ImageNet100-sized runs: 10 s to a minute each
# to make. A test that uses one is slow: `pytest -m "not slow"` leaves it out (pytest.ini).
SLOW_FIXTURES = {"demo_inputs", "real_runs", "simulated_demo", "vit_b_32", "browser"}


def pytest_collection_modifyitems(items):
    for item in items:
        if SLOW_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.slow)
    # The files with slow tests first: pytest-xdist hands out whole files in this order, so that
    # the quick ones come last and fill the gaps, and no worker is left alone with a slow file at
    # the end (sorted is stable: a file's tests keep their order, and the files theirs otherwise).
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items[:] = sorted(items, key=lambda item: item.path not in slow_files)


def made_once(tmp_path_factory, name, make):
    """What `make(folder)` returns (picklable), for a folder made once per test run: under
    pytest-xdist the first worker to ask makes it in the folder the workers share, while the
    others wait for it (a file lock, with a deadline) and then read it; without xdist, as a
    session fixture would."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return make(tmp_path_factory.mktemp(name))
    from filelock import FileLock
    shared = tmp_path_factory.getbasetemp().parent  # the run's, above each worker's own
    folder, made = shared / name, shared / f"{name}.made.pickle"
    with FileLock(shared / f"{name}.lock", timeout=900):
        if not made.exists():
            shutil.rmtree(folder, ignore_errors=True)  # what a worker that failed left
            folder.mkdir()
            made.write_bytes(pickle.dumps(make(folder)))
    return pickle.loads(made.read_bytes())


@pytest.fixture(scope="session")
def read_only_folders():
    """The registry of shared fixtures' folders; at the session's end, none may have changed."""
    registry = ReadOnlyFolders()
    yield registry
    changes = registry.changes()
    assert not changes, ("tests wrote into folders that fixtures share (copy them first):\n"
                         + "\n".join(changes))


# What analysis.analyze writes for every run, next to the run's predictions.npz.
RUN_FILES = {"predictions.npz", "metrics.json", "centroids.json", "histogram_precision.png",
             "histogram_recall.png", "confusion_matrix.png", "pseudo_labels.json", "pseudo_labels.png",
             "why.json"}
# Six real ImageNet100 wnids; n01558993 (first) receives the grayscale, CMYK and PNG files.
SUBSET_WNIDS = ["n01558993", "n01692333", "n02085620", "n02108089", "n03017168", "n04229816"]


def torch_sees_a_cuda_gpu():
    import torch  # here, not at collection: most tests never load torch
    return torch.cuda.is_available()


# Session-scoped, and listed first by the tests that take them, so that they skip before the
# other session fixtures are made for nothing.
@pytest.fixture(scope="session")
def cuda_gpu():
    if not torch_sees_a_cuda_gpu():
        pytest.skip("needs a CUDA GPU")


@pytest.fixture(scope="session")
def no_cuda_gpu():
    if torch_sees_a_cuda_gpu():
        pytest.skip("needs a machine without CUDA")


@pytest.fixture(scope="session")
def demo_inputs(tmp_path_factory, read_only_folders):
    """ImageNet100-style root with 6 classes x 3 images, and both random weight files."""
    inputs = made_once(tmp_path_factory, "inputs", lambda folder: synthetic.write_demo_inputs(
        folder, wnids=SUBSET_WNIDS, images_per_class=3, seed=0))
    read_only_folders.register(inputs.data.parent)
    return inputs


@pytest.fixture(scope="session")
def vit_b_32(tmp_path_factory, read_only_folders):
    """(a seeded random open_clip ViT-B-32 in eval mode (GELU, open_clip's config), its weights
    as a training checkpoint {"epoch", "state_dict"} with DataParallel's "module." prefixes and
    as a .safetensors file)."""
    import open_clip
    import torch
    from safetensors.torch import save_file
    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32", pretrained=None).eval()  # the same in every worker

    def write_weights(folder):
        state_dict = model.state_dict()
        torch.save({"epoch": 3, "state_dict": {f"module.{key}": value for key, value in state_dict.items()}},
                   folder / "vit-b-32-random.pt")
        save_file(state_dict, folder / "weights.safetensors")
        return {"pt": folder / "vit-b-32-random.pt", "safetensors": folder / "weights.safetensors"}

    files = made_once(tmp_path_factory, "vit-b-32", write_weights)
    read_only_folders.register(files["pt"].parent)
    return model, files


@contextlib.contextmanager
def keeping_torch_threads():
    """torch's thread count as before the block: a run's --threads (or a benchmark) sets it for
    the whole process, and no later test may inherit it. Unknown while torch is not loaded."""
    torch = sys.modules.get("torch")
    threads = torch and torch.get_num_threads()
    try:
        yield
    finally:
        if torch:
            torch.set_num_threads(threads)


def run_cli(*argv):
    """starter.main, in this process, with its exit code (raises on failure so the test shows
    stderr). In this process, since a subprocess would add an interpreter's start and imports."""
    with keeping_torch_threads():
        return starter.main([str(arg) for arg in argv])


@pytest.fixture(scope="session")
def real_runs(tmp_path_factory, demo_inputs, read_only_folders):
    """OUT folder after `--model clip` then `--model debiaspl` on the generated folder (CPU)."""
    def run_both(out):
        common = ["--data", demo_inputs.data, "--out", out, "--device", "cpu", "--batch-size", 4,
                  "--workers", 0]
        assert run_cli("--model", "clip", "--clip-weights", demo_inputs.clip_weights,
                       "--prompts", "single", *common) == 0
        assert run_cli("--model", "debiaspl", "--checkpoint", demo_inputs.debiaspl_checkpoint,
                       *common) == 0
        return out

    return read_only_folders.register(made_once(tmp_path_factory, "out", run_both))


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
def analysed_synthetic_runs(tmp_path_factory, read_only_folders):
    """OUT with clip (biased towards the first classes) and debiaspl caches and outputs made from
    synthetic logits, analysed once: tests copy it (synthetic_runs) or only read it."""
    def analyse(out):
        runs = {"clip": synthetic_predictions("clip", 0, bias=[1.5, 1.0, 0.5, 0, -0.5, -1.0]),
                "debiaspl": synthetic_predictions("debiaspl", 1)}
        for model, predictions in runs.items():
            cache.save_predictions(out / model / "predictions.npz", predictions)
            run_analysis.analyze(predictions, out / model, out)
        return out

    return read_only_folders.register(made_once(tmp_path_factory, "synthetic", analyse))


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
def simulated_demo(tmp_path_factory, read_only_folders):
    """OUT after the demo's second half: simulated clip and debiaspl caches, their analysis,
    clip-la, clip-pm and the report, with a name and student ID."""
    def analyse(out):
        args = starter.build_parser().parse_args(["--demo", "--name", "Ada Lovelace",
                                                  "--student-id", "12345678"])
        with figure_worker_processes():  # 100-class figures, as in a real run: worth the workers
            starter.analyse_simulated_runs(args, out)
        return out

    return read_only_folders.register(made_once(tmp_path_factory, "simulated", analyse))
