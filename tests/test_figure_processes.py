"""Figures rendered in worker processes: the same bytes as in this process, every file whole
when rendering is interrupted, and this process taking over when a worker dies."""
import multiprocessing
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import pytest
from matplotlib.figure import Figure

from inference import distributed
from analysis import figure_workers, run_analysis
from runs import outputs
from conftest import figure_worker_processes, run_cli, synthetic_predictions

needs_two_cpus = pytest.mark.skipif(distributed.usable_cpus() < 2, reason="figure workers need 2 CPUs")


WORKERS_FROM_CLASSES = figure_workers.WORKERS_FROM_CLASSES  # before the fixture below sets 1


@pytest.fixture(autouse=True)
def four_figure_processes(monkeypatch):
    monkeypatch.setattr(figure_workers, "FIGURE_PROCESSES", 4)  # conftest sets 1 for the other tests
    monkeypatch.setattr(figure_workers, "WORKERS_FROM_CLASSES", 1)  # the 6-class runs' figures too


@pytest.fixture
def figure_processes():
    with figure_worker_processes():
        yield


def small_figure(label):
    figure = Figure(figsize=(3, 2), layout="constrained")
    axes = figure.add_subplot()
    axes.bar(range(5), [3, 1, 4, 1, 5])
    axes.set_title(label)
    return figure


def in_worker():
    return multiprocessing.current_process().name != "MainProcess"


class InterruptedFigure(Figure):
    """Ctrl-C arriving in the middle of its PNG."""

    def savefig(self, file, **kwargs):
        file.write(b"\x89PNG half")
        raise KeyboardInterrupt


class WorkerKillingFigure(Figure):
    """Its worker process dies while rendering it (out of memory, say); this process renders it."""

    def savefig(self, file, **kwargs):
        if in_worker():
            os._exit(1)
        super().savefig(file, **kwargs)


@needs_two_cpus
def test_worker_png_equals_this_process_png(tmp_path, figure_processes):
    figures = {tmp_path / f"{label}.png": small_figure(label) for label in ("a", "b", "c")}
    figure_workers.write_figures(figures)
    for path, figure in figures.items():
        outputs.write_figure(tmp_path / f"here-{path.name}", figure)
        assert path.read_bytes() == (tmp_path / f"here-{path.name}").read_bytes()
    assert figure_workers.start_figure_processes() is not None  # the workers did the rendering


@pytest.mark.parametrize("where", ["here", pytest.param("workers", marks=needs_two_cpus)])
def test_interrupted_rendering_leaves_whole_files_and_no_temporary(tmp_path, monkeypatch, where):
    """Ctrl-C in the middle of a PNG: the old file stays whole, as every write is atomic (a
    temporary file renamed over it once complete), and no temporary file is left."""
    if where == "here":
        monkeypatch.setattr(figure_workers, "usable_cpus", lambda: 1)
    for name in ("drawn.png", "interrupted.png"):
        (tmp_path / name).write_bytes(b"old")
    interrupted = InterruptedFigure()
    interrupted.add_subplot().plot([0, 1])
    with figure_workers.figure_processes(), pytest.raises(KeyboardInterrupt):
        assert (figure_workers.start_figure_processes() is None) == (where == "here")
        figure_workers.write_figures({tmp_path / "drawn.png": small_figure("drawn"),
                                      tmp_path / "interrupted.png": interrupted})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["drawn.png", "interrupted.png"]
    assert (tmp_path / "interrupted.png").read_bytes() == b"old"
    assert (tmp_path / "drawn.png").read_bytes().startswith(b"\x89PNG\r\n")


@needs_two_cpus
def test_a_worker_that_cannot_write_says_so_in_one_sentence(tmp_path, figure_processes):
    (tmp_path / "blocked.png").mkdir()
    with pytest.raises(outputs.UserError, match=r"cannot write .*blocked\.png \(Is a directory\)"):
        figure_workers.write_figures({tmp_path / "plain.png": small_figure("plain"),
                                      tmp_path / "blocked.png": small_figure("blocked")})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocked.png", "plain.png"]


@needs_two_cpus
def test_a_dead_worker_leaves_its_figure_to_this_process(tmp_path, figure_processes):
    killer = WorkerKillingFigure(figsize=(3, 2))
    killer.add_subplot().plot([0, 1])
    figures = {tmp_path / "killer.png": killer, tmp_path / "plain.png": small_figure("plain")}
    figure_workers.write_figures(figures)
    for path in figures:
        assert path.read_bytes().startswith(b"\x89PNG\r\n")
    assert figure_workers.start_figure_processes() is None  # later figures are rendered here


def worker_that_cannot_start(*args):
    raise ImportError("as a worker spawned for a script without `if __name__ == '__main__'`")


@needs_two_cpus
def test_workers_that_cannot_start_leave_the_figures_to_this_process(tmp_path, monkeypatch,
                                                                      figure_processes):
    monkeypatch.setattr(figure_workers, "_prepare_figure_process", worker_that_cannot_start)
    probe = figure_workers.start_figure_processes().submit(int)
    assert isinstance(probe.exception(timeout=60), BrokenProcessPool)  # before the figures are given
    figures = {tmp_path / f"{label}.png": small_figure(label) for label in ("a", "b")}
    figure_workers.write_figures(figures)
    for path in figures:
        assert path.read_bytes().startswith(b"\x89PNG\r\n")
    assert figure_workers.start_figure_processes() is None  # later figures are rendered here


@needs_two_cpus
def test_an_analysis_starts_workers_from_50_classes(tmp_path, monkeypatch, figure_processes):
    monkeypatch.setattr(figure_workers, "WORKERS_FROM_CLASSES", WORKERS_FROM_CLASSES)
    pools = []

    def recorded_pool(*args, **options):
        pools.append(ProcessPoolExecutor(*args, **options))
        return pools[-1]
    monkeypatch.setattr(figure_workers, "ProcessPoolExecutor", recorded_pool)
    for num_classes, started in ((49, 0), (50, 1)):
        predictions = synthetic_predictions("clip", 0, num_classes=num_classes, images_per_class=2)
        run_analysis.analyze(predictions, tmp_path / f"k{num_classes}", tmp_path)
        assert len(pools) == started and (tmp_path / f"k{num_classes}" / "confusion_matrix.png").is_file()


def test_one_cpu_renders_here(tmp_path, monkeypatch, figure_processes):
    monkeypatch.setattr(figure_workers, "usable_cpus", lambda: 1)
    assert figure_workers.start_figure_processes() is None
    figure_workers.write_figures({tmp_path / "a.png": small_figure("a"), tmp_path / "b.png": small_figure("b")})
    assert all((tmp_path / name).read_bytes().startswith(b"\x89PNG\r\n") for name in ("a.png", "b.png"))


def test_outside_the_block_figures_are_rendered_here():
    with figure_workers.figure_processes():
        pass
    assert figure_workers.start_figure_processes() is None


@needs_two_cpus
def test_command_with_workers_writes_the_same_figures(tmp_path, real_runs):
    shutil.copytree(real_runs / "clip", tmp_path / "clip")
    assert run_cli("--model", "clip", "--from-cache", "--out", tmp_path) == 0
    for name in ("histogram_precision.png", "histogram_recall.png", "confusion_matrix.png",
                 "pseudo_labels.png"):  # real_runs' were rendered in the test process
        assert (tmp_path / "clip" / name).read_bytes() == (real_runs / "clip" / name).read_bytes()
