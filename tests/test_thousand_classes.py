"""Past MAX_TICK_LABELS classes, as at ImageNet-1k's 1,000: the figures' class axes show ranks,
the histograms name the classes at each end in two panels below, no axis has more tick labels
than fit, and the report's pages render. On a SIMULATED cache of 5,000 images x 1,000 classes
(benchmarks/bench_large_cache.py's, the figures' data at full width)."""
import json

import pypdf
import pytest

import plotting
import report
from cli.commands import for_out
from analysis import run_analysis
from conftest import run_cli
from test_benchmarks import benchmark_module
from test_report import assert_pages_have_ink, pdf_page_texts

pytestmark = pytest.mark.slow
NUM_CLASSES, NUM_IMAGES = 1000, 5000
# The ranks a class axis of 1,000 shows: 1, then every hundredth (plotting's docstring).
# The most class names an axis shows: the README's "Figures of more than 120 classes".
MOST_NAMES = 120
RANK_LABELS = ["1", *(str(rank) for rank in range(100, NUM_CLASSES + 1, 100))]


@pytest.fixture(scope="module")
def thousand_classes(tmp_path_factory, read_only_folders):
    """(OUT after `--model clip --from-cache` and the report, {PNG path: the Figure drawn})."""
    out = tmp_path_factory.mktemp("thousand-classes")
    benchmark_module("bench_large_cache.py").write_simulated_cache(
        out / "clip" / "predictions.npz", NUM_IMAGES, NUM_CLASSES, seed=0)
    drawn = {}
    with pytest.MonkeyPatch.context() as monkeypatch:
        write_figures = run_analysis.write_figures
        monkeypatch.setattr(run_analysis, "write_figures", lambda figures, in_workers: (
            drawn.update(figures) or write_figures(figures, in_workers)))
        assert run_cli("--model", "clip", "--from-cache", "--out", out) == 0
    report.write_report(out, for_out(out), name="Ada Lovelace")
    return read_only_folders.register(out), drawn


def tick_labels(axis):
    return [label.get_text() for label in axis.get_ticklabels()]


def class_names_in_order(run_dir):
    summary = json.loads((run_dir / "metrics.json").read_text())
    names = {entry["wnid"]: entry["name"] for entry in summary["classes"]}
    assert len(summary["order"]) == NUM_CLASSES
    return [names[wnid] for wnid in summary["order"]]


@pytest.mark.parametrize("quantity", ["precision", "recall"])
def test_histograms_show_ranks_and_name_the_classes_at_each_end(thousand_classes, quantity):
    out, drawn = thousand_classes
    figure = drawn[out / "clip" / f"histogram_{quantity}.png"]
    names = class_names_in_order(out / "clip")
    whole = figure.axes[0]
    assert tick_labels(whole.xaxis) == RANK_LABELS
    assert "rank in this order" in whole.get_xlabel()
    ends = {ax.get_title(loc="left"): ax for ax in figure.axes if ax.get_title(loc="left").startswith("the ")}
    count = plotting.END_CLASSES
    first = ends[f"the {count} most predicted (ranks 1-{count})"]
    last = ends[f"the {count} least predicted (ranks {NUM_CLASSES - count + 1}-{NUM_CLASSES})"]
    assert tick_labels(first.xaxis) == names[:count]
    assert tick_labels(last.xaxis) == names[-count:]
    assert len(first.patches) == len(last.patches) == count  # a bar per class named


def test_the_confusion_matrix_shows_ranks_on_both_axes(thousand_classes):
    out, drawn = thousand_classes
    matrix = drawn[out / "clip" / "confusion_matrix.png"].axes[0]
    for axis in (matrix.xaxis, matrix.yaxis):
        assert tick_labels(axis) == RANK_LABELS
        assert "rank in this order" in axis.get_label_text()
    assert matrix.get_images()[0].get_array().shape[:2] == (NUM_CLASSES, NUM_CLASSES)


def test_no_axis_of_any_figure_names_more_classes_than_fit(thousand_classes):
    out, drawn = thousand_classes
    assert set(drawn) == {out / "clip" / name for name in (
        "histogram_precision.png", "histogram_recall.png", "confusion_matrix.png", "pseudo_labels.png")}
    for path, figure in drawn.items():
        for ax in figure.axes:
            for axis in (ax.xaxis, ax.yaxis):
                assert len(tick_labels(axis)) <= MOST_NAMES, (path.name, ax.get_title())
        assert path.read_bytes().startswith(b"\x89PNG\r\n")


def test_the_report_of_1000_classes_renders(thousand_classes):
    out, _ = thousand_classes
    texts = pdf_page_texts(out / "report.pdf")
    # Q2's pages say that debiaspl has not run, and hold no figure.
    pages = pypdf.PdfReader(out / "report.pdf").pages
    missing_run = [number for number, (page, text) in enumerate(zip(pages, texts), start=1)
                   if "No results for debiaspl yet" in text and not page.images]
    assert_pages_have_ink(out / "report.pdf", text_only=missing_run)
    assert 0 < len(missing_run) < len(texts) / 2
    assert texts[0].lstrip().startswith("Name: Ada Lovelace") and "SIMULATED" in texts[0]
    markdown = (out / "report.md").read_text()
    for figure in ("clip/histogram_precision.png", "clip/histogram_recall.png", "clip/confusion_matrix.png"):
        assert f"({figure})" in markdown
