"""Analysis of one run: metrics.json, centroids.json, the Q(a)/(b) figures, the pseudo-label
selection diagnostics (pseudo_labels.json and .png) and the terminal text.

numpy and matplotlib only (through metrics.py and plotting.py): it runs on cached logits, read
once in row blocks (read_logits), so that a memory-mapped 1.28M x 1,000 cache is analysed in a
few hundred MB; everything else works from a few numbers per image and per-class sums.
"""
import functools
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import metrics
import plotting
from analysis import pseudo_labels
from analysis import why
from runs.cache import row_blocks
from analysis.explorer_tables import explorer_tables
from runs.tables import TABLES_FILE, write_tables
from analysis.figure_workers import start_figure_processes, write_figures
from runs.outputs import none_if_nan, plural, read_json, write_json
from runs.kinds import homework_questions, run_kind
from runs.kinds import REFERENCE_MODEL
from runs.descriptors import (SIMULATED, is_simulated, model_title,
                  order_reference)
from runs.errors import MissingRun

NEIGHBOR_COUNT = 10
TOP_CONFUSION_COUNT = 20  # metrics.json's top_confusions
CLASS_CONFUSION_COUNT = 5  # per role in class_confusions
TOP_K = 5  # metrics.json's top5_accuracy
# Logits computed on at once: 16 MB as float64. Freed blocks of this size are reused by the
# allocator; blocks above its 32 MB mmap threshold are fresh pages each time, twice as slow.
BLOCK_ELEMENTS = 1 << 21


def blocks_of(logits):
    """Row slices of the [N, K] logits, BLOCK_ELEMENTS elements each."""
    return row_blocks(*logits.shape, BLOCK_ELEMENTS)


@dataclass
class LogitPass:
    """What the analysis keeps of one pass over a run's logits: a few numbers per image and sums
    per class, never a copy of the [N, K] logits."""
    predicted: np.ndarray  # int64 [N]: the arg-max class, the pseudo-label
    confidence: np.ndarray  # float64 [N]: its softmax probability
    top_k_hit: np.ndarray  # bool [N]: the true class is among the TOP_K highest logits
    confusion: np.ndarray  # int64 [K, K]: true class x predicted class
    group_sums: dict  # {grouping: float64 [K, K]}: the logit rows summed per group (GROUPINGS)


def read_logits(logits, labels):
    """One pass over the logits (memory-mapped or not), block by block, in float64."""
    count, num_classes = logits.shape
    passed = LogitPass(predicted=np.empty(count, dtype=np.int64), confidence=np.empty(count),
                       top_k_hit=np.empty(count, dtype=bool),
                       confusion=np.zeros((num_classes, num_classes), dtype=np.int64),
                       group_sums={grouping: np.zeros((num_classes, num_classes))
                                   for grouping in GROUPINGS})
    for rows in blocks_of(logits):
        block = np.asarray(logits[rows], dtype=np.float64)  # exact: float32 widened
        predicted = passed.predicted[rows] = metrics.predicted_labels(block)
        passed.confidence[rows] = pseudo_labels.top_probability(block)
        passed.top_k_hit[rows] = metrics.top_k_hits(block, labels[rows], TOP_K)
        passed.confusion += metrics.confusion_matrix(labels[rows], predicted, num_classes)
        for grouping, groups in (("by_predicted", predicted), ("by_true", labels[rows])):
            passed.group_sums[grouping] += metrics.group_sums(block, groups, num_classes)
    return passed


def reference_order(out_dir, model, wnids, meta=None):
    """Class order of the figures: the run's own (None) for a zero-shot CLIP, that of the run it
    keeps the order of for the others (runs.order_reference: clip's for debiaspl, the source's for
    a training-free run); MissingRun when that run is not there or not on these classes. Given
    this run's meta, also warn when that run saw other image files or other class names."""
    reference = order_reference({"model": model, **(meta or {})})
    if reference is None:
        return None
    path = Path(out_dir) / reference / "metrics.json"
    missing = functools.partial(MissingRun, reference, reference if run_kind(reference) else REFERENCE_MODEL,
                                f"--model {model}", f"keep {reference}'s class order", path)
    if not path.is_file():
        raise missing()
    reference_metrics = read_json(path, f"{reference}'s metrics")
    if sorted(reference_metrics["own_order"]) != sorted(wnids):
        raise missing(problem="was made on other classes than this dataset's")
    theirs, ours = reference_metrics.get("settings", {}), meta or {}
    if theirs.get("file_list_sha256") and ours.get("file_list_sha256") and \
            theirs["file_list_sha256"] != ours["file_list_sha256"]:
        print(f"warning: {reference}'s run in {out_dir} saw other image files than this {model} run; its "
              "class order still applies, but the two runs are not on the same images.",
              file=sys.stderr)
    if theirs.get("class_names") and ours.get("class_names") and \
            theirs["class_names"] != ours["class_names"]:
        print(f"warning: {reference}'s run in {out_dir} used --class-names {theirs['class_names']} and this "
              f"{model} run {ours['class_names']}; the report names the classes differently in the "
              "two runs.", file=sys.stderr)
    return reference_metrics["own_order"]


def class_reference(predictions, index):
    return {"wnid": str(predictions.wnids[index]), "name": str(predictions.names[index])}


def confusion_cells(predictions, confusion, count, **only):
    """metrics.largest_confusions as JSON: true and predicted class, count, share of the true
    class's images."""
    true_counts = confusion.sum(axis=1)
    return [{"true": class_reference(predictions, true),
             "predicted": class_reference(predictions, predicted),
             "count": int(cell), "share_of_true": float(cell / true_counts[true])}
            for true, predicted, cell in zip(*metrics.largest_confusions(confusion, count, **only))]


def class_confusions(predictions, confusion, roles):
    """Per role, its largest confusions: the classes feeding a most predicted class (its column),
    where a least predicted class's images go (its row)."""
    index_of = {str(wnid): index for index, wnid in enumerate(predictions.wnids)}
    result = []
    for role, wnid in roles:
        incoming = role.startswith("most")
        only = {"predicted_class" if incoming else "true_class": index_of[wnid]}
        result.append({"role": role, **class_reference(predictions, index_of[wnid]),
                       "direction": "incoming" if incoming else "outgoing",
                       "confusions": confusion_cells(predictions, confusion,
                                                     CLASS_CONFUSION_COUNT, **only)})
    return result


def summarize(predictions, passed, order_wnids=None):
    """metrics.json: accuracies, the class order, per-class counts (true positives among them, so
    that nothing is rebuilt from rounded ratios), precision and recall, and who steals from whom
    (the largest confusions overall and those of the roles' classes)."""
    confusion = passed.confusion
    reference = order_reference(predictions.meta)
    precision, recall = metrics.precision_recall(confusion)
    predicted_counts = confusion.sum(axis=0)
    own_order = [str(predictions.wnids[i]) for i in metrics.prediction_order(predicted_counts)]
    classes = [{"wnid": str(wnid), "name": str(name), "true_count": int(true_count),
                "predicted_count": int(predicted_count), "true_positives": int(true_positives),
                "precision": none_if_nan(p), "recall": none_if_nan(r)}
               for wnid, name, true_count, predicted_count, true_positives, p, r in zip(
                   predictions.wnids, predictions.names, confusion.sum(axis=1), predicted_counts,
                   np.diag(confusion), precision, recall)]
    return {
        "model": predictions.meta["model"],
        "num_images": int(len(predictions.labels)),
        "accuracy": metrics.accuracy(confusion),
        "top5_accuracy": float(np.mean(passed.top_k_hit)),
        "balanced_accuracy": metrics.balanced_accuracy(recall),
        "order": order_wnids or own_order,
        "own_order": own_order,
        "classes": classes,
        "top_confusions": confusion_cells(predictions, confusion, TOP_CONFUSION_COUNT),
        "class_confusions": class_confusions(predictions, confusion,
                                             class_roles(own_order, order_wnids, reference)),
        "skipped": predictions.meta.get("skipped", []),
        "settings": predictions.meta,
    }


def class_roles(own_order, reference_order=None, reference=REFERENCE_MODEL):
    """(role, wnid) pairs of the classes Q(c) and who-steals-from-whom look at: the most and least
    predicted, and for the runs in the order of the run `reference` (Q2c: clip's) that run's two
    as well."""
    roles = [("most predicted", own_order[0]), ("least predicted", own_order[-1])]
    if reference_order is not None:
        roles += [(f"most predicted by {reference}", reference_order[0]),
                  (f"least predicted by {reference}", reference_order[-1])]
    return roles


GROUPINGS = {
    "by_predicted": ("predicted label", "no image is predicted as this class, so it has no centroid"),
    "by_true": ("true label", "this class has no images, so it has no centroid"),
}
NO_OTHER_CENTROID = "no other class has a centroid in this grouping, so it has no neighbours"
CENTERED = "centered"  # centroids.json key of the shift-invariant neighbours


def nearest_queries(predictions, centroids, roles, empty_note):
    """Each role's NEIGHBOR_COUNT nearest class centroids, as JSON."""
    index_of = {str(wnid): index for index, wnid in enumerate(predictions.wnids)}
    queries = []
    for role, wnid in roles:
        neighbours, cosines = metrics.nearest_centroids(centroids, index_of[wnid], NEIGHBOR_COUNT)
        query = {"role": role, **class_reference(predictions, index_of[wnid]),
                 "neighbors": [{**class_reference(predictions, i), "cosine": float(c)}
                               for i, c in zip(neighbours, cosines)]}
        if not query["neighbors"]:
            query["note"] = empty_note if np.isnan(centroids[index_of[wnid]]).any() else NO_OTHER_CENTROID
        queries.append(query)
    return {"queries": queries}


def centroid_neighbours(predictions, passed, roles):
    """centroids.json: each role's 10 nearest class centroids for both groupings, of the logits
    as they are (the homework's quantity) and, under "centered", of the logits minus each image's
    mean logit."""
    group_sizes = {"by_predicted": passed.confusion.sum(axis=0), "by_true": passed.confusion.sum(axis=1)}
    literal, centered = {}, {}
    for grouping, (_, empty_note) in GROUPINGS.items():
        centroids = metrics.group_means(passed.group_sums[grouping], group_sizes[grouping])
        literal[grouping] = nearest_queries(predictions, centroids, roles, empty_note)
        centered[grouping] = nearest_queries(predictions, metrics.centered_centroids(centroids),
                                             roles, empty_note)
    return {**literal, CENTERED: centered}


MISMATCH_LABEL = "concept-mismatched (CAP Algorithm 1)"


def draw_histograms(summary, title, mismatched=()):
    """{file name: Figure} of Q(a)'s histograms, classes in summary['order'], the `mismatched`
    classes (wnids) marked."""
    by_wnid = {entry["wnid"]: entry for entry in summary["classes"]}
    ordered = [by_wnid[wnid] for wnid in summary["order"]]
    names = [entry["name"] for entry in ordered]
    counts = np.array([entry["predicted_count"] for entry in ordered])
    own = summary["order"] == summary["own_order"]
    reference = order_reference(summary["settings"])  # None only for a run in its own order
    order_note = "" if own else f", in {reference}'s order"
    by = "" if own else f" by {reference}"
    marked = [position for position, wnid in enumerate(summary["order"]) if wnid in set(mismatched)]
    true_counts = np.array([entry["true_count"] for entry in ordered])
    figures = {}
    for quantity in ("precision", "recall"):
        values = np.array([np.nan if entry[quantity] is None else entry[quantity] for entry in ordered])
        figures[f"histogram_{quantity}.png"] = plotting.prediction_histogram(
            counts, values, names, quantity, summary["num_images"] / len(ordered),
            title=f"{title}: predictions per class{order_note}, with {quantity}",
            end_roles=(f"most predicted{by}", f"least predicted{by}"),
            marked=(MISMATCH_LABEL, marked) if marked else None,
            true_counts=None if (true_counts == true_counts[0]).all() else true_counts)
    return figures


def draw_figures(summary, confusion, title, mismatched=()):
    """{file name: Figure} of Q(a) and Q(b), classes in summary['order'], the `mismatched`
    classes (wnids) marked on the histograms."""
    index_of = {entry["wnid"]: index for index, entry in enumerate(summary["classes"])}
    order = [index_of[wnid] for wnid in summary["order"]]
    names = [summary["classes"][index]["name"] for index in order]
    order_note = "" if summary["order"] == summary["own_order"] else f", in {REFERENCE_MODEL}'s order"
    figures = draw_histograms(summary, title, mismatched)
    figures["confusion_matrix.png"] = plotting.confusion_matrix_figure(
        confusion[np.ix_(order, order)], names, title=f"{title}: confusion matrix{order_note}")
    return figures


def draw_pseudo_labels(selection, model_title):
    """pseudo_labels.png from pseudo_labels.json's content."""
    def column(table, key):
        return np.array([np.nan if row[key] is None else row[key] for row in selection[table]["rows"]])

    per_class = selection["kept_per_class"]
    return plotting.pseudo_label_figure(
        column("confidence_threshold", "threshold"), column("confidence_threshold", "kept_share"),
        column("confidence_threshold", "accuracy"), column("class_balanced_top_k", "k"),
        column("class_balanced_top_k", "selected_share"), column("class_balanced_top_k", "accuracy"),
        [entry["kept"] for entry in per_class["classes"]],
        [entry["kept_correct"] for entry in per_class["classes"]],
        [entry["name"] for entry in per_class["classes"]], per_class["threshold"],
        title=f"{model_title}: pseudo-labels a semi-supervised learner would select")


def analyze(predictions, run_dir, out_dir):
    """Write metrics.json, centroids.json, pseudo_labels.json, why.json, explorer.npz (what the
    explorer shows that no JSON holds, so that it never reads the logits) and the figures of one
    run; return the first three JSONs."""
    start_figure_processes()  # they start while the numbers are computed and the figures drawn
    model = predictions.meta["model"]
    order_wnids = reference_order(out_dir, model, [str(w) for w in predictions.wnids],
                                  predictions.meta)
    passed = read_logits(predictions.logits, predictions.labels)
    summary = summarize(predictions, passed, order_wnids)
    centroids = centroid_neighbours(predictions, passed, class_roles(
        summary["own_order"], order_wnids, order_reference(predictions.meta)))
    selection = pseudo_labels.summarize(passed.confidence, passed.predicted, predictions.labels,
                                        predictions.wnids, predictions.names, summary["order"], model)
    cosines = why.centroid_cosines(metrics.group_means(passed.group_sums["by_predicted"],
                                                       passed.confusion.sum(axis=0)))
    diagnosis = why.diagnose(predictions, passed.predicted, passed.confidence, cosines, summary)
    summary["figure4_claim"] = diagnosis["figure4"]
    tables = explorer_tables(passed.predicted, predictions.labels, passed.confidence,
                             passed.confusion, cosines, predictions.paths, NEIGHBOR_COUNT)
    # Everything is computed and drawn before the first file is written.
    title = model_title(predictions.meta)
    marks = why.mismatch_marks(predictions.meta, run_dir, out_dir, diagnosis)
    figures = draw_figures(summary, passed.confusion, title, marks)
    figures["pseudo_labels.png"] = draw_pseudo_labels(selection, title)
    figures = {run_dir / name: figure for name, figure in figures.items()}
    write_json(run_dir / "metrics.json", summary)
    write_json(run_dir / "centroids.json", centroids)
    write_json(run_dir / "pseudo_labels.json", selection)
    write_json(run_dir / why.WHY_FILE, diagnosis)
    write_tables(run_dir / TABLES_FILE, tables)
    write_figures(figures)
    return summary, centroids, selection


def format_selection(selection):
    """One line: the pseudo-labels kept at DebiasPL's training threshold."""
    row = pseudo_labels.at_threshold(selection)
    correct = "" if row["accuracy"] is None else f", {row['accuracy']:.1%} of them correct"
    return (f"pseudo-labels at confidence ≥ {row['threshold']:g}: {row['kept_share']:.1%} of images "
            f"kept ({row['kept']} of {selection['num_images']}){correct}, "
            f"{plural(row['classes_without_kept'], 'class', 'classes')} with none kept")


CENTROID_KINDS = (  # (centroids.json part, what the cosines are of, decimals shown)
    (None, "mean logits", 6),  # literal cosines may crowd near 1: 6 decimals tell them apart
    (CENTERED, "mean logits minus each image's mean logit", 4),
)


def centroid_queries(centroids, kind, grouping):
    """The queries of one grouping, literal (kind None) or centered."""
    return (centroids if kind is None else centroids[kind])[grouping]["queries"]


def format_neighbour_queries(queries, decimals):
    """Each role's class, then its neighbours nearest first and their cosine vector."""
    lines = []
    for query in queries:
        lines.append(f"{query['role']}: {query['name']} ({query['wnid']})")
        if query.get("note"):
            lines.append(f"  {query['note']}")
            continue
        lines.append("  classes: " + ", ".join(n["name"] for n in query["neighbors"]))
        lines.append("  cosine:  [" + ", ".join(f"{n['cosine']:.{decimals}f}"
                                                for n in query["neighbors"]) + "]")
    return lines


def format_centroid_answer(centroids, question):
    """Q(c) as the homework asks it, the answer to hand in first: the literal cosines of the
    centroids of the images grouped by predicted label; then the centered view, secondary. The
    by-true-label views are in centroids.json and the report's appendix."""
    (literal, _, literal_decimals), (centered, _, centered_decimals) = CENTROID_KINDS
    return ([f"-- {question}(c) ANSWER: the {NEIGHBOR_COUNT} nearest class centroids, highest cosine "
             "first (centroid = mean logit vector of the images predicted as the class) --"]
            + format_neighbour_queries(centroid_queries(centroids, literal, "by_predicted"),
                                       literal_decimals)
            + [f"-- {question}(c), easier to read, not the homework's quantity: the same after "
               "subtracting each image's mean logit (predictions unchanged) --"]
            + format_neighbour_queries(centroid_queries(centroids, centered, "by_predicted"),
                                       centered_decimals))


def format_class_confusion(cell, incoming):
    """One cell of a role's confusions: where its images come from or go to."""
    other = cell["true" if incoming else "predicted"]
    return (f"{cell['count']:5d} {'from' if incoming else 'to'} {other['name']} ({other['wnid']}): "
            f"{cell['share_of_true']:.0%} of {cell['true']['name']}'s images")


def format_report(summary, centroids, selection):
    """What the homework report needs, as terminal text, under its sub-question labels."""
    by_wnid = {entry["wnid"]: entry for entry in summary["classes"]}
    question = homework_questions().get(summary["model"], "")
    simulated = f"{SIMULATED} " if is_simulated(summary["settings"]) else ""
    lines = [f"== {simulated}{summary['model']}: {summary['num_images']} images, {len(by_wnid)} classes ==",
             f"accuracy {summary['accuracy']:.4f}   top-5 {summary['top5_accuracy']:.4f}   "
             f"balanced accuracy {summary['balanced_accuracy']:.4f}",
             format_selection(selection),
             f"-- {question}(a) most and least predicted classes; who feeds the most predicted, "
             "where the least predicted's images go --"]
    for entry in summary["class_confusions"]:
        counted = by_wnid[entry["wnid"]]
        tied = sum(e["predicted_count"] == counted["predicted_count"] for e in summary["classes"]) - 1
        incoming = entry["direction"] == "incoming"
        lines.append(f"{entry['role']}: {entry['name']} ({entry['wnid']}): "
                     f"{counted['predicted_count']} predictions, {counted['true_count']} images"
                     + (f"; tied with {plural(tied, 'other class', 'other classes')}, broken by "
                        "class index" if tied else "")
                     + ("; it takes images of" if incoming else "; its images go to"))
        lines += [f"  {format_class_confusion(cell, incoming)}" for cell in entry["confusions"]
                  ] or ["  no other class"]
    lines.append(f"-- {question}(b) the {len(summary['top_confusions'])} largest confusions, "
                 "true class -> predicted class --")
    lines += [f"{cell['count']:5d}  {cell['true']['name']} -> {cell['predicted']['name']} "
              f"({cell['share_of_true']:.0%} of its images)" for cell in summary["top_confusions"]]
    lines += format_centroid_answer(centroids, question)
    if "figure4_claim" in summary:  # metrics.json from before the test lacks it
        lines += why.figure4_lines(summary["figure4_claim"])
    return "\n".join(lines)
