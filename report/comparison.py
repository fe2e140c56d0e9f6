"""The runs compared over clip's class order: per-class counts and recall, comparison.png, the
measures of every run and the pseudo-labels a semi-supervised learner would keep."""
from dataclasses import dataclass

import numpy as np

import plotting
from analysis import pseudo_labels
from runs.descriptors import SIMULATED
from runs.kinds import REFERENCE_MODEL

from .content import Image, Section, Table, Text, format_number
from .measures import COMPARISON_COLUMNS, class_arrays, measures_table, run_measures
from .run_folders import extra_models


PSEUDO_LABEL_THRESHOLDS = (0.5, 0.9, 0.95, 0.99)  # columns of the pseudo-label table


PSEUDO_LABEL_TOP_K = 16  # the class-balanced top-k column


COMPARISON_FIGURE = "comparison.png"


@dataclass
class Comparison:
    """The runs on one dataset, split and class set, in the order of their reference run: clip
    where it is among them, else the first whose class order is its own."""
    reference: str
    label: str  # the dataset and split, for titles
    figure: str  # the PNG under OUT
    wnids: list  # the reference's order: most to least predicted by it
    names: list
    true_counts: np.ndarray
    predicted_counts: dict  # {run: counts in the reference's order}
    recalls: dict  # {run: recall in the reference's order, NaN where undefined}
    balanced_count: float
    confusions: list  # the reference's top_confusions
    simulated: bool

    @property
    def recall_changes(self):
        """{run: recall − the reference's} for the other runs; NaN where either is undefined."""
        reference = self.recalls[self.reference]
        return {run: recall - reference for run, recall in self.recalls.items()
                if run != self.reference}


def comparison_groups(runs):
    """[Comparison] of the analysed runs, one per dataset, split and class set (runs on other
    classes are never compared class by class), the homework's (clip's) first."""
    groups = {}
    for run_id, run in runs.items():
        if run.metrics is not None:
            groups.setdefault(run.group, []).append(run_id)
    return [comparison_data(runs, members) for members in
            sorted(groups.values(), key=lambda members: REFERENCE_MODEL not in members)]


def comparison_data(runs, members):
    """Per-class counts and recall of the runs `members` in their reference's order."""
    reference = (REFERENCE_MODEL if REFERENCE_MODEL in members else
                 next((m for m in members if runs[m].descriptor["order_reference"] is None), members[0]))
    order = runs[reference].metrics["own_order"]
    predicted_counts, recalls = {}, {}
    for model in members:
        _, _, _, predicted_counts[model], recalls[model] = class_arrays(runs[model].metrics, order)
    wnids, names, true_counts, counts, _ = class_arrays(runs[reference].metrics, order)
    dataset, split, _ = runs[reference].group
    label = f"{dataset or f'the classes of {reference}'}" + ("" if split == "val" else f", {split} split")
    figure = COMPARISON_FIGURE if reference == REFERENCE_MODEL else f"comparison-{reference}.png"
    return Comparison(reference, label, figure, wnids, names, true_counts, predicted_counts, recalls,
                      float(counts.sum() / len(counts)),
                      runs[reference].metrics.get("top_confusions", []),
                      any(runs[model].simulated for model in members))


def draw_comparison(comparison):
    position = {wnid: index for index, wnid in enumerate(comparison.wnids)}
    cells = [(position[cell["true"]["wnid"]], position[cell["predicted"]["wnid"]])
             for cell in comparison.confusions]
    confused = (f"{comparison.reference}'s {len(cells)} largest confusions", cells) if cells else None
    return plotting.comparison_figure(
        comparison.names, comparison.predicted_counts, comparison.recall_changes,
        comparison.balanced_count, comparison.reference, confused,
        title=(f"{SIMULATED}: " if comparison.simulated else "")
        + f"predictions per class and recall change on {comparison.label}, classes in "
          f"{comparison.reference}'s order")


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
    return Table(columns, rows, f"Per class on {comparison.label}, in {comparison.reference}'s "
                                "order (most to least predicted by it)")


def training_free_share(runs, model):
    """The homework's underlying question in one paragraph: how much of DebiasPL's change over
    clip does a training-free run on clip's logits reach? None until clip, debiaspl and it have
    run, and for any other run."""
    models = (REFERENCE_MODEL, "debiaspl", model)
    if not all(runs.get(m) is not None and runs[m].metrics for m in models) or \
            runs[model].descriptor["source"] != REFERENCE_MODEL:
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
    """One dataset's runs side by side: their measures, what the training-free ones reach of
    DebiasPL's change, their pseudo-labels and the comparison figure."""
    members = {model: runs[model] for model in comparison.predicted_counts}
    section = Section("Comparison", f"the runs on {comparison.label}, classes in "
                                    f"{comparison.reference}'s order")
    section.blocks.append(measures_table(members, COMPARISON_COLUMNS,
                                         "Accuracy and prediction-count imbalance"))
    shares = [text for text in (training_free_share(runs, m) for m in extra_models(members)) if text]
    section.blocks += shares + ([Text(TRAINING_FREE_NOTE, "note")] if shares else [])
    selection = pseudo_label_table(members)
    if selection.rows:
        section.blocks.append(selection)
    if len(comparison.predicted_counts) == 1:
        section.blocks.append(Text(f"Only {comparison.reference} has results on these classes: "
                                   "other runs add their curves, columns and recall changes once "
                                   "they exist.", "note"))
    marks = (f"; ▼ and ▲ mark the predicted and true classes of {comparison.reference}'s "
             f"{len(comparison.confusions)} largest confusions" if comparison.confusions else "")
    section.blocks.append(Image(comparison.figure, "Comparison: predictions per class of every run "
                                f"(top) and recall change against {comparison.reference} "
                                f"(bottom){marks}", draw=lambda size: draw_comparison(comparison)))
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
