"""Analysis of one run: metrics.json, centroids.json, the Q(a)/(b) figures and the pseudo-label
selection diagnostics (pseudo_labels.json and .png); terminal_text.py prints them.

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
from analysis.class_roles import (Ranking, ZERO_PREDICTION_RULE, centroid_roles, class_roles,
                                  role_entry, secondary_roles)
from runs.cache import row_blocks
from analysis.explorer_tables import explorer_tables
from runs.tables import TABLES_FILE, write_tables
from analysis.figure_workers import start_figure_processes, worth_workers, write_figures
from runs.outputs import none_if_nan, read_json, write_json
from runs.kinds import REFERENCE_MODEL, run_kind
from runs.descriptors import model_title, order_reference
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


def reference_ranking(out_dir, model, wnids, meta=None):
    """The ranking (class_roles.Ranking) whose class order the figures keep: the run's own (None)
    for a zero-shot CLIP, that of the run it keeps the order of for the others
    (runs.order_reference: clip's for debiaspl, the source's for a training-free run);
    MissingRun when that run is not there or not on these classes. Given this run's meta, also
    warn when that run saw other image files or other class names."""
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
    return Ranking(reference, reference_metrics["own_order"],
                   {entry["wnid"]: entry["predicted_count"] for entry in reference_metrics["classes"]})


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


def wnid_reference(predictions):
    """wnid -> {"wnid", "name"} of the run's classes."""
    index_of = {str(wnid): index for index, wnid in enumerate(predictions.wnids)}
    return lambda wnid: class_reference(predictions, index_of[wnid])


def class_confusions(predictions, confusion, roles, rankings):
    """Per role (class_roles.Role), its largest confusions: the classes feeding a most predicted
    class (its column), where a least predicted class's images go (its row)."""
    index_of = {str(wnid): index for index, wnid in enumerate(predictions.wnids)}
    result = []
    for role in roles:
        incoming = role.label.startswith("most")
        only = {"predicted_class" if incoming else "true_class": index_of[role.wnid]}
        result.append({**role_entry(role, rankings, wnid_reference(predictions)),
                       "direction": "incoming" if incoming else "outgoing",
                       "confusions": confusion_cells(predictions, confusion,
                                                     CLASS_CONFUSION_COUNT, **only)})
    return result


def own_ranking(predictions, confusion, run):
    """The run's own class ranking, from its confusion matrix."""
    predicted_counts = confusion.sum(axis=0)
    return Ranking(run, [str(predictions.wnids[i]) for i in metrics.prediction_order(predicted_counts)],
                   {str(wnid): int(count) for wnid, count in zip(predictions.wnids, predicted_counts)})


def summarize(predictions, passed, rankings):
    """metrics.json of a run from `rankings` (its own_ranking, then its reference_ranking if it
    has one): accuracies, the class order (the last ranking's), per-class counts (true positives among them, so that nothing is
    rebuilt from rounded ratios), precision and recall, and who steals from whom (the largest
    confusions overall and those of the roles' classes)."""
    confusion = passed.confusion
    precision, recall = metrics.precision_recall(confusion)
    predicted_counts = confusion.sum(axis=0)
    own_order = rankings[0].order
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
        "order": rankings[-1].order,
        "own_order": own_order,
        "classes": classes,
        "top_confusions": confusion_cells(predictions, confusion, TOP_CONFUSION_COUNT),
        "class_confusions": class_confusions(predictions, confusion, class_roles(*rankings), rankings),
        "skipped": predictions.meta.get("skipped", []),
        "settings": predictions.meta,
    }


GROUPINGS = {
    "by_predicted": ("predicted label", "no image is predicted as this class, so it has no centroid"),
    "by_true": ("true label", "this class has no images, so it has no centroid"),
}
NO_OTHER_CENTROID = "no other class has a centroid in this grouping, so it has no neighbours"
CENTERED = "centered"  # centroids.json key of the shift-invariant neighbours


def nearest_queries(predictions, centroids, roles, rankings, empty_note):
    """Each role's NEIGHBOR_COUNT nearest class centroids, as JSON."""
    index_of = {str(wnid): index for index, wnid in enumerate(predictions.wnids)}
    queries = []
    for role in roles:
        neighbours, cosines = metrics.nearest_centroids(centroids, index_of[role.wnid], NEIGHBOR_COUNT)
        query = {**role_entry(role, rankings, wnid_reference(predictions)),
                 "neighbors": [{**class_reference(predictions, i), "cosine": float(c)}
                               for i, c in zip(neighbours, cosines)]}
        if not query["neighbors"]:
            query["note"] = (empty_note if np.isnan(centroids[index_of[role.wnid]]).any()
                             else NO_OTHER_CENTROID)
        queries.append(query)
    return {"queries": queries}


def centroid_neighbours(predictions, passed, rankings):
    """centroids.json: the 10 nearest class centroids of the classes of centroid_roles (rankings:
    this run's, then its reference's if any) for both groupings, of the logits as they are (the
    homework's quantity) and, under "centered", of the logits minus each image's mean logit. By
    true label, the classes the zero-prediction rule set aside as well."""
    roles = centroid_roles(*rankings)
    queried = {"by_predicted": roles, "by_true": roles + secondary_roles(roles)}
    group_sizes = {"by_predicted": passed.confusion.sum(axis=0), "by_true": passed.confusion.sum(axis=1)}
    literal, centered = {}, {}
    for grouping, (_, empty_note) in GROUPINGS.items():
        centroids = metrics.group_means(passed.group_sums[grouping], group_sizes[grouping])
        literal[grouping] = nearest_queries(predictions, centroids, queried[grouping], rankings,
                                            empty_note)
        centered[grouping] = nearest_queries(predictions, metrics.centered_centroids(centroids),
                                             queried[grouping], rankings, empty_note)
    rule = {"zero_prediction_rule": ZERO_PREDICTION_RULE} if queried["by_true"] != roles else {}
    return {**rule, **literal, CENTERED: centered}


MISMATCH_LABEL = "concept-mismatched (CAP Algorithm 1)"


HISTOGRAM_QUANTITIES = ("precision", "recall")


def draw_histograms(summary, title, mismatched=(), quantities=HISTOGRAM_QUANTITIES):
    """{file name: Figure} of Q(a)'s histograms (those overlaying `quantities`), classes in
    summary['order'], the `mismatched` classes (wnids) marked."""
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
    for quantity in quantities:
        values = np.array([np.nan if entry[quantity] is None else entry[quantity] for entry in ordered])
        figures[f"histogram_{quantity}.png"] = plotting.prediction_histogram(
            counts, values, names, quantity, summary["num_images"] / len(ordered),
            title=f"{title}: predictions per class{order_note}, with {quantity}",
            end_roles=(f"most predicted{by}", f"least predicted{by}"),
            marked=(MISMATCH_LABEL, marked) if marked else None,
            true_counts=None if (true_counts == true_counts[0]).all() else true_counts)
    return figures


def draw_confusion_matrix(summary, confusion, title, size=None):
    """Q(b)'s confusion matrix [K, K] (the run's class indices) in summary['order']; titled
    `title` unless it fills a page's box of `size` (plotting.confusion_matrix_figure), which is
    captioned."""
    index_of = {entry["wnid"]: index for index, entry in enumerate(summary["classes"])}
    order = [index_of[wnid] for wnid in summary["order"]]
    names = [summary["classes"][index]["name"] for index in order]
    own = summary["order"] == summary["own_order"]
    order_note = "" if own else f", in {order_reference(summary['settings'])}'s order"
    return plotting.confusion_matrix_figure(
        np.asarray(confusion)[np.ix_(order, order)], names, size=size,
        title="" if size else f"{title}: confusion matrix{order_note}")


def draw_figures(summary, confusion, title, mismatched=()):
    """{file name: Figure} of Q(a) and Q(b), classes in summary['order'], the `mismatched`
    classes (wnids) marked on the histograms."""
    return {**draw_histograms(summary, title, mismatched),
            "confusion_matrix.png": draw_confusion_matrix(summary, confusion, title)}


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
    in_workers = worth_workers(len(predictions.wnids))
    if in_workers:
        start_figure_processes()  # they start while the numbers are computed and the figures drawn
    model = predictions.meta["model"]
    reference = reference_ranking(out_dir, model, [str(w) for w in predictions.wnids],
                                  predictions.meta)
    passed = read_logits(predictions.logits, predictions.labels)
    rankings = [own_ranking(predictions, passed.confusion, Path(run_dir).name)]
    rankings += [reference] if reference else []
    summary = summarize(predictions, passed, rankings)
    centroids = centroid_neighbours(predictions, passed, rankings)
    selection = pseudo_labels.summarize(passed.confidence, passed.predicted, predictions.labels,
                                        predictions.wnids, predictions.names, summary["order"], model)
    cosines = why.centroid_cosines(metrics.group_means(passed.group_sums["by_predicted"],
                                                       passed.confusion.sum(axis=0)))
    diagnosis, detection = why.diagnose(predictions, passed.predicted, passed.confidence, cosines,
                                        summary)
    summary["figure4_claim"] = diagnosis["figure4"]
    tables = explorer_tables(passed.predicted, predictions.labels, passed.confidence,
                             passed.confusion, cosines, predictions.paths, NEIGHBOR_COUNT)
    # Everything is computed and drawn before the first file is written.
    title = model_title(predictions.meta)
    marks = why.run_mismatches(model, run_dir, out_dir, diagnosis) or []
    figures = draw_figures(summary, passed.confusion, title, marks)
    figures["pseudo_labels.png"] = draw_pseudo_labels(selection, title)
    figures = {run_dir / name: figure for name, figure in figures.items()}
    write_json(run_dir / "metrics.json", summary)
    write_json(run_dir / "centroids.json", centroids)
    write_json(run_dir / "pseudo_labels.json", selection)
    write_json(run_dir / why.WHY_FILE, diagnosis)
    if detection:
        why.save_detection(run_dir / why.DETECTION_FILE, *detection)
    write_tables(run_dir / TABLES_FILE, tables)
    write_figures(figures, in_workers)
    return summary, centroids, selection
