"""Figures rendered side by side in worker processes, and stopped with the command.

Imported by the analysis only: an inference process never starts these workers.
"""
import atexit
import contextlib
import multiprocessing
import os
import signal
import threading
from concurrent.futures import ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from inference.distributed import helper_follows_parent, usable_cpus
from runs.outputs import write_figure

# Rendering a PNG (layout, text, rasterising: ~1 s at 100 classes) is most of an analysis, and
# each figure is independent: inside `figure_processes()`, worker processes render them side by
# side. They are spawned, not forked, since the parent may hold CUDA and other threads.
FIGURE_PROCESSES = 4  # an analysis writes four figures
# Below this many classes an analysis's figures take ~1-1.5 CPU-s in all to render here (measured
# at 6 and 30 classes), less than two workers cost to start (~0.6 CPU-s each for matplotlib
# alone): they are rendered in this process. At 100 classes they take ~2.5-6 s here.
WORKERS_FROM_CLASSES = 50
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


def _prepare_figure_process(parent_pid, spawned_by_main_thread):
    # A worker ends with its parent, however the parent ends: no orphan keeps ~70-90 MB, or the
    # resource tracker, which ends once no process holds its pipe.
    helper_follows_parent(parent_pid, spawned_by_main_thread)
    # A worker leaves nothing open (each file is written and renamed within its task): skip the
    # interpreter's teardown, ~0.1-0.2 s that stopping the workers would wait for.
    atexit.register(os._exit, 0)
    import matplotlib.backends.backend_agg  # noqa: F401  (the import is the ~0.7 s start)


def _warm_up():
    """A task for each new worker: a spawning pool starts a process when no idle one takes it."""


def worth_workers(num_classes):
    """Whether the figures of an analysis of `num_classes` classes go to the worker processes."""
    return num_classes >= WORKERS_FROM_CLASSES


def start_figure_processes():
    """Start the figure workers now, so that their start overlaps the work before the figures
    are drawn; None outside `figure_processes()`, on one CPU, or where they cannot run (figures
    are then rendered in this process)."""
    global _figure_pool
    processes = min(FIGURE_PROCESSES, usable_cpus())
    may_start = (_figure_processes_allowed and processes > 1 and not _figure_processes_failed
                 and not multiprocessing.current_process().daemon)  # daemons may have no children
    if _figure_pool is None and may_start:
        spawned_by_main_thread = threading.current_thread() is threading.main_thread()
        _figure_pool = ProcessPoolExecutor(processes, multiprocessing.get_context("spawn"),
                                           initializer=_prepare_figure_process,
                                           initargs=(os.getpid(), spawned_by_main_thread))
        with sigint_ignored():  # inherited through exec: a worker still importing ignores Ctrl-C too
            for _ in range(processes):  # each submit spawns a worker from this thread: all of them
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


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C raises KeyboardInterrupt: the command ends the same way,
    and exits with SIGTERM's code (143) instead of Ctrl-C's (130)."""


def terminate_as_interrupt():
    """Let SIGTERM (Slurm's preemption, `kill`) end the command as Ctrl-C does: Terminated in
    the main thread, so that the figures being rendered are finished and the workers stop.
    Call it from the main thread; elsewhere, where handlers cannot be set, it does nothing."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(signum, frame):
    raise Terminated


def stop_figure_processes():
    """Let the figures being rendered finish (each file whole), drop the queued ones."""
    global _figure_pool
    if _figure_pool is not None:
        _figure_pool.shutdown(wait=True, cancel_futures=True)
        _figure_pool = None


def write_figures(figures, in_workers=True):
    """Write {path: Figure} as PNGs, each atomically, side by side in the figure workers (with
    `in_workers`; else here); return when all are written. A worker that dies (or cannot start,
    as under a script without `if __name__ == "__main__"`) leaves its figures to this process."""
    global _figure_processes_failed
    pool = start_figure_processes() if in_workers and len(figures) > 1 else None
    try:
        futures = pool and [pool.submit(write_figure, path, figure) for path, figure in figures.items()]
    except BrokenProcessPool:  # a worker died before these were given: none of them was taken
        _figure_processes_failed = True
        stop_figure_processes()
        futures = None
    if not futures:
        for path, figure in figures.items():
            write_figure(path, figure)
        return
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
