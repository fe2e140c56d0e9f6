"""Analysis of one run: metrics.json, centroids.json, the Q(a)/(b) figures, the pseudo-label
selection diagnostics (pseudo_labels.json and .png) and the terminal text.

numpy and matplotlib only (through metrics.py and plotting.py): it runs on cached logits.
"""
import sys
from pathlib import Path

import numpy as np

import metrics
import plotting
import pseudo_labels
from outputs import (MODEL_TITLES, REFERENCE_MODEL, UserError, read_json, write_figure,
                     write_json)

NEIGHBOR_COUNT = 10


def none_if_nan(value):
    return None if np.isnan(value) else float(value)


def reference_order(out_dir, model, wnids, meta=None):
    """Class order of the figures: the model's own for clip, clip's own order for the others.
    Given this run's meta, also warn when clip's run saw other image files or other class names."""
    if model == REFERENCE_MODEL:
        return None
    path = Path(out_dir) / REFERENCE_MODEL / "metrics.json"
    if not path.is_file():
        raise UserError(f"{path} does not exist: run `python starter.py --model clip` first, "
                        f"with the same --out, so that --model {model} can keep clip's class order.")
    reference = read_json(path, "clip's metrics")
    if sorted(reference["own_order"]) != sorted(wnids):
        raise UserError(f"{path} was made on other classes than this dataset's; run --model clip "
                        "again on this dataset.")
    theirs, ours = reference.get("settings", {}), meta or {}
    if theirs.get("file_list_sha256") and ours.get("file_list_sha256") and \
            theirs["file_list_sha256"] != ours["file_list_sha256"]:
        print(f"warning: clip's run in {out_dir} saw other image files than this {model} run; its "
              "class order still applies, but the two runs are not on the same images.",
              file=sys.stderr)
    if theirs.get("class_names") and ours.get("class_names") and \
            theirs["class_names"] != ours["class_names"]:
        print(f"warning: clip's run in {out_dir} used --class-names {theirs['class_names']} and this "
              f"{model} run {ours['class_names']}; the report names the classes differently in the "
              "two runs.", file=sys.stderr)
    return reference["own_order"]


def summarize(predictions, confusion, order_wnids=None):
    """metrics.json: accuracies, the class order and per-class counts, precision and recall."""
    precision, recall = metrics.precision_recall(confusion)
    predicted_counts = confusion.sum(axis=0)
    own_order = [str(predictions.wnids[i]) for i in metrics.prediction_order(predicted_counts)]
    classes = [{"wnid": str(wnid), "name": str(name), "true_count": int(true_count),
                "predicted_count": int(predicted_count), "precision": none_if_nan(p),
                "recall": none_if_nan(r)}
               for wnid, name, true_count, predicted_count, p, r in zip(
                   predictions.wnids, predictions.names, confusion.sum(axis=1), predicted_counts,
                   precision, recall)]
    return {
        "model": predictions.meta["model"],
        "num_images": int(len(predictions.labels)),
        "accuracy": metrics.accuracy(confusion),
        "top5_accuracy": metrics.top_k_accuracy(predictions.logits, predictions.labels, 5),
        "balanced_accuracy": metrics.balanced_accuracy(recall),
        "order": order_wnids or own_order,
        "own_order": own_order,
        "classes": classes,
        "skipped": predictions.meta.get("skipped", []),
        "settings": predictions.meta,
    }


def centroid_roles(summary, reference_summary_order=None):
    """(role, wnid) pairs of Q1c (clip) or Q2c (the other models: also clip's two classes)."""
    roles = [("most predicted", summary["own_order"][0]),
             ("least predicted", summary["own_order"][-1])]
    if reference_summary_order is not None:
        roles += [(f"most predicted by {REFERENCE_MODEL}", reference_summary_order[0]),
                  (f"least predicted by {REFERENCE_MODEL}", reference_summary_order[-1])]
    return roles


GROUPINGS = {
    "by_predicted": ("predicted label", "no image is predicted as this class, so it has no centroid"),
    "by_true": ("true label", "this class has no images, so it has no centroid"),
}


def centroid_neighbours(predictions, roles):
    """centroids.json: each role's 10 nearest class centroids, for both groupings."""
    num_classes = len(predictions.wnids)
    index_of = {str(wnid): index for index, wnid in enumerate(predictions.wnids)}
    groups = {"by_predicted": metrics.predicted_labels(predictions.logits),
              "by_true": predictions.labels}
    result = {}
    for grouping, (_, empty_note) in GROUPINGS.items():
        centroids = metrics.class_centroids(predictions.logits, groups[grouping], num_classes)
        queries = []
        for role, wnid in roles:
            neighbours, cosines = metrics.nearest_centroids(centroids, index_of[wnid], NEIGHBOR_COUNT)
            query = {"role": role, "wnid": wnid, "name": str(predictions.names[index_of[wnid]]),
                     "neighbors": [{"wnid": str(predictions.wnids[i]), "name": str(predictions.names[i]),
                                    "cosine": float(c)} for i, c in zip(neighbours, cosines)]}
            if not query["neighbors"]:
                query["note"] = empty_note
            queries.append(query)
        result[grouping] = {"queries": queries}
    return result


def draw_figures(summary, confusion, model_title):
    """{file name: Figure} of Q(a) and Q(b), classes in summary['order']."""
    index_of = {entry["wnid"]: index for index, entry in enumerate(summary["classes"])}
    order = [index_of[wnid] for wnid in summary["order"]]
    ordered = [summary["classes"][index] for index in order]
    names = [entry["name"] for entry in ordered]
    counts = np.array([entry["predicted_count"] for entry in ordered])
    balanced = summary["num_images"] / len(ordered)
    order_note = "" if summary["order"] == summary["own_order"] else f", in {REFERENCE_MODEL}'s order"
    figures = {}
    for quantity in ("precision", "recall"):
        values = np.array([np.nan if entry[quantity] is None else entry[quantity] for entry in ordered])
        figures[f"histogram_{quantity}.png"] = plotting.prediction_histogram(
            counts, values, names, quantity, balanced,
            title=f"{model_title}: predictions per class{order_note}, with {quantity}")
    figures["confusion_matrix.png"] = plotting.confusion_matrix_figure(
        confusion[np.ix_(order, order)], names, title=f"{model_title}: confusion matrix{order_note}")
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
    """Write metrics.json, centroids.json, pseudo_labels.json and the figures of one run; return
    the three JSONs."""
    model = predictions.meta["model"]
    order_wnids = reference_order(out_dir, model, [str(w) for w in predictions.wnids],
                                  predictions.meta)
    predicted = metrics.predicted_labels(predictions.logits)
    confusion = metrics.confusion_matrix(predictions.labels, predicted, len(predictions.wnids))
    summary = summarize(predictions, confusion, order_wnids)
    centroids = centroid_neighbours(predictions, centroid_roles(summary, order_wnids))
    selection = pseudo_labels.summarize(predictions.logits, predictions.labels, predictions.wnids,
                                        predictions.names, summary["order"], model)
    # Everything is computed and drawn before the first file is written.
    figures = draw_figures(summary, confusion, MODEL_TITLES.get(model, model))
    figures["pseudo_labels.png"] = draw_pseudo_labels(selection, MODEL_TITLES.get(model, model))
    write_json(run_dir / "metrics.json", summary)
    write_json(run_dir / "centroids.json", centroids)
    write_json(run_dir / "pseudo_labels.json", selection)
    for name, figure in figures.items():
        write_figure(run_dir / name, figure)
    return summary, centroids, selection


def format_selection(selection):
    """One line: the pseudo-labels kept at DebiasPL's training threshold."""
    row = pseudo_labels.at_threshold(selection)
    correct = "" if row["accuracy"] is None else f", {row['accuracy']:.1%} of them correct"
    return (f"pseudo-labels at confidence ≥ {row['threshold']:g}: {row['kept_share']:.1%} of images "
            f"kept ({row['kept']} of {selection['num_images']}){correct}, "
            f"{row['classes_without_kept']} classes with none kept")


def format_report(summary, centroids, selection):
    """What the homework report needs, as terminal text."""
    by_wnid = {entry["wnid"]: entry for entry in summary["classes"]}
    lines = [f"== {summary['model']}: {summary['num_images']} images, {len(by_wnid)} classes ==",
             f"accuracy {summary['accuracy']:.4f}   top-5 {summary['top5_accuracy']:.4f}   "
             f"balanced accuracy {summary['balanced_accuracy']:.4f}",
             format_selection(selection)]
    for role, wnid in (("most predicted", summary["own_order"][0]),
                       ("least predicted", summary["own_order"][-1])):
        entry = by_wnid[wnid]
        tied = sum(e["predicted_count"] == entry["predicted_count"] for e in summary["classes"]) - 1
        lines.append(f"{role}: {entry['name']} ({wnid}): {entry['predicted_count']} predictions, "
                     f"{entry['true_count']} images" + (f"; tied with {tied} other classes, "
                                                         "broken by class index" if tied else ""))
    for grouping, (grouped_by, _) in GROUPINGS.items():
        lines.append(f"-- centroid neighbours (images grouped by {grouped_by}) --")
        for query in centroids[grouping]["queries"]:
            lines.append(f"{query['role']}: {query['name']} ({query['wnid']})")
            if query.get("note"):
                lines.append(f"  {query['note']}")
                continue
            lines.append("  classes: " + ", ".join(n["name"] for n in query["neighbors"]))
            lines.append("  cosine:  [" + ", ".join(f"{n['cosine']:.4f}" for n in query["neighbors"]) + "]")
    return "\n".join(lines)
