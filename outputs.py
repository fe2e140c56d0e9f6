"""The on-disk contract between the stages: run folders, predictions.npz, JSON and figure files.

Every output is written to a temporary file and renamed, so none is ever half-written. numpy
only: reading a cache never imports torch.
"""
import atexit
import contextlib
import json
import multiprocessing
import os
import signal
import tempfile
import threading
from concurrent.futures import ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class UserError(Exception):
    """A mistake the user can fix (path, file, option): reported as one sentence, no traceback."""


FIGURE_DPI = 200
REFERENCE_MODEL = "clip"  # Q2: "keep the same order of classes as in Q1"
LOGIT_ADJUSTED_MODEL = "clip-la"  # clip's cached logits, debiased without training
PRIOR_MATCHED_MODEL = "clip-pm"  # clip's cached logits, balanced by prior matching
MODEL_TITLES = {
    "clip": "CLIP RN50 zero-shot",
    "debiaspl": "DebiasPL (zero-shot, RN50)",
    "clip-la": "CLIP RN50 + logit adjustment",
    "clip-pm": "CLIP RN50 + prior matching",
}
QUESTION_OF_MODEL = {REFERENCE_MODEL: "Q1", "debiaspl": "Q2"}  # the homework's questions
SIMULATED = "SIMULATED"  # in every title drawn from simulated logits (the demo's)


def is_simulated(meta):
    """Whether a run's logits were simulated: its own meta says so, or, for a run derived from
    clip's cached logits (clip-la), the meta of clip's cache it carries."""
    return bool(meta.get("simulated") or meta.get(REFERENCE_MODEL, {}).get("simulated"))


def model_title(meta):
    """The run's model title, prefixed with SIMULATED when its logits were simulated."""
    title = MODEL_TITLES.get(meta["model"], meta["model"])
    return f"{SIMULATED} {title}" if is_simulated(meta) else title


def write_atomic(path, write):
    """Call write(binary_file) on a temporary file next to `path`, then rename it over `path`.
    A failing write (no permission, a full disk, a folder in the way) is a UserError."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.",
                                             suffix=".tmp", delete=False)
    except OSError as error:
        raise write_error(path, error) from None
    try:
        with handle:
            write(handle)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(handle.name, 0o666 & ~umask)  # NamedTemporaryFile creates 0600
        os.replace(handle.name, path)
    except BaseException as error:
        os.unlink(handle.name)
        if isinstance(error, OSError):
            raise write_error(path, error) from None
        raise


def write_error(path, error):
    return UserError(f"cannot write {path} ({error.strerror or error}).")


def write_json(path, data):
    write_atomic(path, lambda f: f.write((json.dumps(data, indent=2) + "\n").encode()))


def write_figure(path, figure):
    # zlib level 3 instead of PIL's 6: ~0.1 s less per multi-megapixel figure, ~20% larger files.
    write_atomic(path, lambda f: figure.savefig(f, format="png", dpi=FIGURE_DPI,
                                                pil_kwargs={"compress_level": 3}))


def usable_cpus():
    """CPUs this process may run on: its affinity mask where the OS has one (a Slurm job's
    allocation, taskset), else every CPU."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


# Rendering a PNG (layout, text, rasterising: ~1 s at 100 classes) is most of an analysis, and
# each figure is independent: inside `figure_processes()`, worker processes render them side by
# side. They are spawned, not forked, since the parent may hold CUDA and other threads.
FIGURE_PROCESSES = 4  # an analysis writes four figures
_figure_pool = None
_figure_processes_allowed = False
_figure_processes_failed = False  # once they could not run, the rest is rendered here


@contextlib.contextmanager
def figure_processes():
    """Let the figures written inside the block be rendered in worker processes, and stop them
    when it ends: explicitly, since a process that is itself a multiprocessing child would wait
    for them forever at its exit."""
    global _figure_processes_allowed, _figure_processes_failed
    if _figure_processes_allowed:  # inside another block, which stops them
        yield
        return
    _figure_processes_allowed, _figure_processes_failed = True, False
    try:
        yield
    finally:
        _figure_processes_allowed = False
        stop_figure_processes()


def _prepare_figure_process():
    # Ctrl-C reaches the whole process group: the parent decides, and a worker ends its figure.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A worker leaves nothing open (each file is written and renamed within its task): skip the
    # interpreter's teardown, ~0.1-0.2 s that stopping the workers would wait for.
    atexit.register(os._exit, 0)
    import matplotlib.backends.backend_agg  # noqa: F401  (the import is the ~0.7 s start)


def _warm_up():
    """A task for each new worker: a spawning pool starts a process when no idle one takes it."""


def start_figure_processes():
    """Start the figure workers now, so that their start overlaps the work before the figures
    are drawn; None outside `figure_processes()`, on one CPU, or where they cannot run (figures
    are then rendered in this process)."""
    global _figure_pool
    processes = min(FIGURE_PROCESSES, usable_cpus())
    may_start = (_figure_processes_allowed and processes > 1 and not _figure_processes_failed
                 and not multiprocessing.current_process().daemon)  # daemons may have no children
    if _figure_pool is None and may_start:
        _figure_pool = ProcessPoolExecutor(processes, multiprocessing.get_context("spawn"),
                                           initializer=_prepare_figure_process)
        with sigint_ignored():  # inherited through exec: a worker still importing ignores Ctrl-C too
            for _ in range(processes):
                _figure_pool.submit(_warm_up)
    return _figure_pool


@contextlib.contextmanager
def sigint_ignored():
    """Ignore Ctrl-C in the block, where signal handlers can be set (the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def stop_figure_processes():
    """Let the figures being rendered finish (each file whole), drop the queued ones."""
    global _figure_pool
    if _figure_pool is not None:
        _figure_pool.shutdown(wait=True, cancel_futures=True)
        _figure_pool = None


def write_figures(figures):
    """Write {path: Figure} as PNGs, each atomically, side by side in the figure workers; return
    when all are written. A worker that dies (or cannot start, as under a script without
    `if __name__ == "__main__"`) leaves its figures to this process."""
    global _figure_processes_failed
    pool = start_figure_processes() if len(figures) > 1 else None
    if pool is None:
        for path, figure in figures.items():
            write_figure(path, figure)
        return
    futures = [pool.submit(write_figure, path, figure) for path, figure in figures.items()]
    try:
        wait(futures)
    except BaseException:  # Ctrl-C: the figures in progress are finished, whole
        stop_figure_processes()
        raise
    for future, (path, figure) in zip(futures, figures.items()):
        error = future.exception()
        if isinstance(error, BrokenProcessPool):
            _figure_processes_failed = True
            stop_figure_processes()
            write_figure(path, figure)
        elif error is not None:
            raise error


def read_json(path, what):
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"{what} {path} does not exist.") from None
    except (OSError, ValueError) as error:
        raise UserError(f"{what} {path} cannot be read ({error}).") from None


@dataclass
class Predictions:
    """A run's logits and what they are of: the contract of predictions.npz, which any tool may
    write (see the README) and every analysis starts from."""
    logits: np.ndarray  # float32 [N, K], column k = class wnids[k]
    labels: np.ndarray  # int64 [N], ground truth as a column index in 0..K-1
    paths: np.ndarray  # str [N], image paths relative to the val folder
    wnids: np.ndarray  # str [K], ImageFolder order (sorted)
    names: np.ndarray  # str [K], class names as shown in figures and tables
    meta: dict  # what produced these logits ("model" at least)


PREDICTION_KEYS = ("logits", "labels", "paths", "wnids", "names", "meta")
REQUIRED_KEYS = PREDICTION_KEYS[:-1]  # a cache written by another tool may lack meta
NO_META = "unknown (no meta in the cache)"


def save_predictions(path, predictions):
    arrays = {key: getattr(predictions, key) for key in REQUIRED_KEYS}
    arrays["meta"] = np.array(json.dumps(predictions.meta))
    write_atomic(path, lambda f: np.savez(f, **arrays))


def contract_violation(arrays):
    """What keeps these arrays from being a run's predictions, or None when they are one."""
    logits, labels = arrays["logits"], arrays["labels"]
    if logits.ndim != 2 or not np.issubdtype(logits.dtype, np.floating):
        return f"logits must be a float array [N, K], not {logits.dtype} {logits.shape}"
    count, num_classes = logits.shape
    if not np.isfinite(logits).all():
        return "logits hold nan or inf"
    if labels.shape != (count,) or not np.issubdtype(labels.dtype, np.integer):
        return f"labels must be {count} integers, not {labels.dtype} {labels.shape}"
    if count and not 0 <= labels.min() <= labels.max() < num_classes:
        return f"labels must lie in 0..{num_classes - 1}, the logits' columns"
    for key, length in (("paths", count), ("wnids", num_classes), ("names", num_classes)):
        if arrays[key].shape != (length,) or arrays[key].dtype.kind != "U":
            return f"{key} must be {length} strings, not {arrays[key].dtype} {arrays[key].shape}"
    return None


def load_predictions(path):
    """The cache of a run; a missing, damaged or malformed one stops with what to do.

    Without meta (a cache written by another tool), the model is the run folder's name and the
    provenance is unknown."""
    path = Path(path)
    rebuild = f"run `python starter.py --model {path.parent.name}` without --from-cache to rebuild it"
    if not path.is_file():
        raise UserError(f"there is no cache at {path}; {rebuild}.")
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [key for key in REQUIRED_KEYS if key not in archive.files]
            if missing:
                raise UserError(f"the cache {path} lacks {', '.join(missing)}; {rebuild}.")
            loaded = {key: archive[key] for key in PREDICTION_KEYS if key in archive.files}
        meta = json.loads(str(loaded["meta"])) if "meta" in loaded else {
            "model": path.parent.name, "provenance": NO_META}
        if not isinstance(meta, dict) or "model" not in meta:
            raise ValueError("its meta entry names no model")
    except UserError:
        raise
    except Exception as error:
        raise UserError(f"the cache {path} is damaged ({error}); {rebuild}.") from None
    violation = contract_violation(loaded)
    if violation:
        raise UserError(f"the cache {path} does not follow the predictions.npz contract: "
                        f"{violation}; see the README's 'Bring your own logits'.")
    loaded["meta"] = meta
    loaded["logits"] = loaded["logits"].astype(np.float32, copy=False)
    loaded["labels"] = loaded["labels"].astype(np.int64, copy=False)
    return Predictions(**loaded)
