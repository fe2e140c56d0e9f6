"""Are the same classes over-predicted by every backbone? Per dataset (its split and classes), the
Spearman correlation between the runs' predicted counts per class, and the classes that every
model run over-predicts or never predicts."""
from dataclasses import dataclass

import numpy as np

from analysis.concepts import spearman
from report.comparison import comparison_groups
from runs.kinds import TRAINING_FREE



@dataclass
class SharedClass:
    """A class every model run on a dataset over-predicts or never predicts."""
    name: str
    wnid: str
    images: int
    fewest: int  # its fewest predictions over those runs
    most: int


@dataclass
class Agreement:
    """One dataset's runs: how alike their predicted counts per class are."""
    label: str  # the dataset and split, for titles
    reference: str  # the run whose class order report.comparison keeps: names the figure
    runs: list  # run ids, in the study's order
    rho: np.ndarray  # [R, R] Spearman correlation of the runs' predicted counts, NaN where undefined
    model_runs: list  # the runs the shared classes are over: every run but the training-free ones
    over_predicted: list  # [SharedClass], most over-predicted first (its fewest predictions over
    # its images)
    never_predicted: list  # [SharedClass], by name


def count_correlation(counts, other_counts):
    """Spearman ρ of two runs' predicted counts per class; NaN where either is constant."""
    if np.ptp(counts) == 0 or np.ptp(other_counts) == 0:
        return float("nan")
    return spearman(counts, other_counts)[0]


def correlation_matrix(counts):
    """[R, R] Spearman ρ between each two of the runs' count vectors `counts` [R, K]."""
    rho = np.full((len(counts), len(counts)), np.nan)
    for i in range(len(counts)):
        for j in range(i + 1):
            rho[i, j] = rho[j, i] = count_correlation(counts[i], counts[j])
    return rho


def shared_classes(comparison, model_runs):
    """([SharedClass] every one of `model_runs` over-predicts (more predictions than images),
    [SharedClass] none of them predicts)."""
    counts = np.array([comparison.predicted_counts[run] for run in model_runs])
    true_counts = np.asarray(comparison.true_counts)
    over = np.all(counts > true_counts, axis=0)
    never = np.all(counts == 0, axis=0)

    def described(index):
        return SharedClass(comparison.names[index], comparison.wnids[index], int(true_counts[index]),
                           int(counts[:, index].min()), int(counts[:, index].max()))

    over_predicted = sorted((described(index) for index in np.flatnonzero(over)),
                            key=lambda shared: (-shared.fewest / max(shared.images, 1), shared.name))
    return over_predicted, sorted((described(index) for index in np.flatnonzero(never)),
                                  key=lambda shared: shared.name)


def agreements(runs):
    """[Agreement] of the study's runs `runs` (analysed, in the study's order), one per dataset,
    split and class set (report.comparison's groups)."""
    found = []
    for comparison in comparison_groups(runs):
        members = list(comparison.predicted_counts)
        model_runs = [run for run in members if runs[run].descriptor["kind"] != TRAINING_FREE] or members
        counts = np.array([comparison.predicted_counts[run] for run in members])
        found.append(Agreement(comparison.label, comparison.reference, members,
                               correlation_matrix(counts), model_runs,
                               *shared_classes(comparison, model_runs)))
    return found
