"""The report's figures drawn anew from the files a run's analysis wrote, by the code that drew
its PNGs, so that report.pdf embeds them as vector graphics (report.vector_figures): class names
stay text, searchable and sharp at any zoom. The PNGs in the run folders stay as the analysis
drew them. A figure no file holds the data of (clip-la's la_sweep.png, or a confusion matrix of
a run analysed before explorer.npz) has no drawer, and its PNG is placed."""
import numpy as np

from analysis import run_analysis
from analysis import why
from runs.tables import TABLES_FILE

HISTOGRAMS = {f"histogram_{quantity}.png": quantity for quantity in run_analysis.HISTOGRAM_QUANTITIES}
CONFUSION_MATRIX = "confusion_matrix.png"
PSEUDO_LABELS = "pseudo_labels.png"


def confusion_matrix(run):
    """The run's confusion matrix [K, K] (its class indices), from explorer.npz's non-zero cells."""
    true, predicted, counts = run.tables().cells
    matrix = np.zeros((len(run.metrics["classes"]),) * 2, dtype=np.int64)
    matrix[true, predicted] = counts
    return matrix


def figure_drawer(run, name, out_dir):
    """draw(size) -> the Figure of the run's PNG `name`, at `size` (width, height) in inches
    where the figure can be laid out to a page's box (the confusion matrix), else (and for size
    None) at the size its PNG was drawn; None when no file holds its data."""
    if name in HISTOGRAMS:
        mismatched = why.run_mismatches(run.made_by, run.directory, out_dir, run.why) or []
        return lambda size: run_analysis.draw_histograms(
            run.metrics, run.title, mismatched, (HISTOGRAMS[name],))[name]
    if name == CONFUSION_MATRIX and (run.directory / TABLES_FILE).is_file():
        return lambda size: run_analysis.draw_confusion_matrix(
            run.metrics, confusion_matrix(run), run.title, size)
    if name == PSEUDO_LABELS and run.pseudo_labels is not None:
        return lambda size: run_analysis.draw_pseudo_labels(run.pseudo_labels, run.title)
    return None
