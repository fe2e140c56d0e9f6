"""The runs compared over clip's class order: per-class counts and recall, comparison.png, the
measures of every run and the pseudo-labels a semi-supervised learner would keep."""
from dataclasses import dataclass

import numpy as np

import plotting
import pseudo_labels
from outputs import UserError
from runs import REFERENCE_MODEL, SIMULATED

from .content import Image, Section, Table, Text, format_number, missing_run_note
from .measures import COMPARISON_COLUMNS, class_arrays, measures_table, run_measures
from .run_folders import extra_models


PSEUDO_LABEL_THRESHOLDS = (0.5, 0.9, 0.95, 0.99)  # columns of the pseudo-label table


PSEUDO_LABEL_TOP_K = 16  # the class-balanced top-k column


COMPARISON_FIGURE = "comparison.png"


@dataclass
class Comparison:
    wnids: list  # clip's order: most to least predicted by clip
    names: list
    true_counts: np.ndarray
    predicted_counts: dict  # {run: counts in clip's order}
    recalls: dict  # {run: recall in clip's order, NaN where undefined}
    balanced_count: float
    confusions: list  # clip's top_confusions
    simulated: bool

    @property
    def recall_changes(self):
        """{run: recall − clip's recall} for the runs other than clip; NaN where either is undefined."""
        reference = self.recalls[REFERENCE_MODEL]
        return {run: recall - reference for run, recall in self.recalls.items()
                if run != REFERENCE_MODEL}


def comparison_data(runs):
    """Per-class counts and recall of every analysed run in clip's order; None without clip."""
    reference = runs.get(REFERENCE_MODEL)
    if reference is None or reference.metrics is None:
        return None
    order = reference.metrics["own_order"]
    predicted_counts, recalls = {}, {}
    for model, run in runs.items():
        if run.metrics is None:
            continue
        if sorted(entry["wnid"] for entry in run.metrics["classes"]) != sorted(order):
            raise UserError(f"{run.directory} was made on other classes than "
                            f"{reference.directory}; run both on the same dataset.")
        _, _, _, predicted_counts[model], recalls[model] = class_arrays(run.metrics, order)
    wnids, names, true_counts, counts, _ = class_arrays(reference.metrics, order)
    return Comparison(wnids, names, true_counts, predicted_counts, recalls,
                      float(counts.sum() / len(counts)), reference.metrics.get("top_confusions", []),
                      any(run.simulated for run in runs.values()))


def draw_comparison(comparison):
    position = {wnid: index for index, wnid in enumerate(comparison.wnids)}
    cells = [(position[cell["true"]["wnid"]], position[cell["predicted"]["wnid"]])
             for cell in comparison.confusions]
    confused = (f"{REFERENCE_MODEL}'s {len(cells)} largest confusions", cells) if cells else None
    return plotting.comparison_figure(
        comparison.names, comparison.predicted_counts, comparison.recall_changes,
        comparison.balanced_count, REFERENCE_MODEL, confused,
        title=(f"{SIMULATED}: " if comparison.simulated else "")
        + f"predictions per class and recall change, classes in {REFERENCE_MODEL}'s order")


def per_class_table(comparison):
    """Every class in clip's order: its images, and each run's predicted count and recall."""
    columns = ["#", "class", "wnid", "images"]
    for run in comparison.predicted_counts:
        columns += [f"{run} pred.", f"{run} recall"]
    rows = []
    for index, (wnid, name, images) in enumerate(zip(comparison.wnids, comparison.names,
                                                     comparison.true_counts)):
        row = [str(index + 1), name, wnid, str(images)]
        for run, counts in comparison.predicted_counts.items():
            row += [str(counts[index]), format_number(comparison.recalls[run][index])]
        rows.append(row)
    return Table(columns, rows, f"Per class, in {REFERENCE_MODEL}'s order (most to least "
                                "predicted by it)")


def training_free_share(runs, model):
    """The homework's underlying question in one paragraph: how much of DebiasPL's change over
    clip does a training-free run reach? None until clip, debiaspl and it have run."""
    models = (REFERENCE_MODEL, "debiaspl", model)
    if not all(runs.get(m) is not None and runs[m].metrics for m in models):
        return None
    clip, debiaspl, free_run = (run_measures(runs[m].metrics) for m in models)
    sentences = []
    for key, label in (("accuracy", "accuracy"), ("balanced_accuracy", "balanced accuracy"),
                       ("macro_f1", "macro-F1"), ("kl_from_uniform", "KL to uniform")):
        trained, free = debiaspl[key] - clip[key], free_run[key] - clip[key]
        share = f"{free / trained:.0%} of " if abs(trained) > 1e-12 else ""
        sentences.append(f"{label} {free:+.4f} ({share}DebiasPL's {trained:+.4f})")
    return Text(f"{model}, change against clip: " + ", ".join(sentences) + ".")


TRAINING_FREE_NOTE = ("Training-free runs change clip's cached logits and train nothing; DebiasPL is "
                      "a separately trained ResNet-50, so its change mixes debiasing with "
                      "everything else training does.")


def comparison_section(runs, comparison, out_dir):
    section = Section("Comparison", f"all runs, classes in {REFERENCE_MODEL}'s order")
    if comparison is None:
        section.blocks.append(missing_run_note(REFERENCE_MODEL, out_dir))
        return section
    section.blocks.append(measures_table(runs, COMPARISON_COLUMNS,
                                         "Accuracy and prediction-count imbalance"))
    shares = [text for text in (training_free_share(runs, m) for m in extra_models(runs)) if text]
    section.blocks += shares + ([Text(TRAINING_FREE_NOTE, "note")] if shares else [])
    selection = pseudo_label_table(runs)
    if selection.rows:
        section.blocks.append(selection)
    if len(comparison.predicted_counts) == 1:
        section.blocks.append(Text("Only clip has results: the other runs add their curves, "
                                   "columns and recall changes once they exist.", "note"))
    marks = (f"; ▼ and ▲ mark the predicted and true classes of {REFERENCE_MODEL}'s "
             f"{len(comparison.confusions)} largest confusions" if comparison.confusions else "")
    section.blocks.append(Image(COMPARISON_FIGURE, "Comparison: predictions per class of every run "
                                f"(top) and recall change against {REFERENCE_MODEL} (bottom){marks}"))
    return section


def share_and_accuracy(share, accuracy):
    """A pseudo-label table cell: share of images selected / accuracy of their pseudo-labels."""
    return f"{format_number(share, 3)} / {format_number(accuracy, 3)}"


def pseudo_label_table(runs):
    """Per run: share kept and accuracy of the kept pseudo-labels at a few thresholds τ, the
    classes left with none at 0.95, and class-balanced top-k."""
    columns = ["run", *(f"τ = {threshold:g}: kept / acc." for threshold in PSEUDO_LABEL_THRESHOLDS),
               "classes none kept at 0.95", f"top-{PSEUDO_LABEL_TOP_K}: selected / acc."]
    rows = []
    for model, run in runs.items():
        if run.pseudo_labels is None:
            continue
        cells = [model]
        for threshold in PSEUDO_LABEL_THRESHOLDS:
            row = pseudo_labels.at_threshold(run.pseudo_labels, threshold)
            cells.append(share_and_accuracy(row["kept_share"], row["accuracy"]))
        cells.append(str(pseudo_labels.at_threshold(run.pseudo_labels)["classes_without_kept"]))
        top_k = next(row for row in run.pseudo_labels["class_balanced_top_k"]["rows"]
                     if row["k"] == PSEUDO_LABEL_TOP_K)
        cells.append(share_and_accuracy(top_k["selected_share"], top_k["accuracy"]))
        rows.append(cells)
    return Table(columns, rows, "Pseudo-labels a semi-supervised learner would train on: share of "
                 "images kept and accuracy of their pseudo-labels (FixMatch: top softmax "
                 f"probability ≥ τ; class-balanced: the {PSEUDO_LABEL_TOP_K} most confident images "
                 "predicted as each class)")
