"""Everything the page shows, as one JSON-ready dict: the classes in the reference run's order,
per run its numbers, confusion cells, neighbours and pseudo-labels, the embedded images, and the
plotly figures. Strings stay as the files hold them: the page shows them as text, never as HTML.
"""
from pathlib import Path

import metrics
import pseudo_labels
from explorer import figures
from explorer.images import image_folder, read_thumbnails, unavailable_reason
from explorer.run_data import (cell_images, confusion_cells, find_runs, kept_per_class,
                               nearest_centroid_table, read_cache, top_k_per_class)
from runs import is_simulated, model_title

# Images embedded in one page at most, whatever --thumbnails asks per cell: at ~3 KB each, 30 MB.
# Every cell's most confident image comes before any cell's second, larger cells first.
MAX_EMBEDDED_IMAGES = 10_000
NEIGHBOUR_DECIMALS = {"literal": 7, "centered": 5}  # one more than the report shows (6 and 4)


def rounded_neighbours(table, decimals):
    return [[[neighbour, round(cosine, decimals)] for neighbour, cosine in row] for row in table]


def finite_or_none(value):
    return value if value == value and abs(value) != float("inf") else None


def run_summary(run, predicted_counts):
    """The run's whole-set numbers for the comparison table."""
    kept = pseudo_labels.at_threshold(run.pseudo_labels)
    imbalance = metrics.prediction_imbalance(predicted_counts)
    return {"images": run.metrics["num_images"], "accuracy": run.metrics["accuracy"],
            "balanced_accuracy": run.metrics["balanced_accuracy"],
            "top5_accuracy": run.metrics.get("top5_accuracy"),
            "max_min_ratio": finite_or_none(imbalance["max_min_ratio"]),
            "classes_without_predictions": imbalance["classes_without_predictions"],
            "kept_threshold": kept["threshold"], "kept_share": kept["kept_share"],
            "kept_accuracy": kept["accuracy"]}


def run_entry(run, passed, order):
    """One run's numbers per class (in `order`), confusion cells and nearest centroids."""
    by_wnid = {entry["wnid"]: entry for entry in run.metrics["classes"]}
    position_of = {wnid: position for position, wnid in enumerate(order)}
    kept = {entry["wnid"]: entry for entry in run.pseudo_labels["kept_per_class"]["classes"]}
    column = {key: [by_wnid[wnid][field] for wnid in order] for key, field in (
        ("predicted", "predicted_count"), ("true", "true_count"), ("precision", "precision"),
        ("recall", "recall"))}
    centroids = {"literal": passed.centroids,
                 "centered": metrics.centered_centroids(passed.centroids)}
    return {
        "model": run.model, "title": model_title(run.metrics["settings"]),
        "simulated": is_simulated(run.metrics["settings"]),
        "summary": run_summary(run, column["predicted"]), **column,
        "kept": [kept[wnid]["kept"] for wnid in order],
        "kept_correct": [kept[wnid]["kept_correct"] for wnid in order],
        "kept_threshold": run.pseudo_labels["kept_per_class"]["threshold"],
        "cells": [cells.tolist() for cells in confusion_cells(passed)],
        "top_confusions": [[position_of[cell["true"]["wnid"]], position_of[cell["predicted"]["wnid"]],
                            cell["count"], cell["share_of_true"]]
                           for cell in run.metrics["top_confusions"]],
        "neighbours": {kind: rounded_neighbours(nearest_centroid_table(values), NEIGHBOUR_DECIMALS[kind])
                       for kind, values in centroids.items()},
    }


def image_candidates(passes, per_cell):
    """[(rank in cell, -cell size, run, image)] of every cell's `per_cell` most confident images,
    for the runs whose image folder can be read, and each run's note (None when it can)."""
    candidates, notes = [], []
    for run_index, passed in enumerate(passes):
        notes.append(unavailable_reason(passed.meta, per_cell))
        if notes[-1] is not None:
            continue
        chosen, ranks, cell_sizes = cell_images(passed, per_cell)
        candidates += zip(ranks.tolist(), (-cell_sizes).tolist(), [run_index] * len(chosen),
                          chosen.tolist())
    return sorted(candidates), notes


def embedded_images(passes, per_cell, limit=MAX_EMBEDDED_IMAGES):
    """The images the page embeds, [[path, base64 JPEG or None, why not or None]], and per run
    {"true predicted": [[image, probability], ...]} in each cell's confidence order; whether
    `limit` left images out."""
    candidates, notes = image_candidates(passes, per_cell)
    folders = [None if note else Path(image_folder(passed.meta)).resolve()
               for passed, note in zip(passes, notes)]
    index_of, cells, limited = {}, [{} for _ in passes], False
    for _, _, run_index, image in candidates:
        passed = passes[run_index]
        key = (folders[run_index], str(passed.paths[image]))
        if key not in index_of:
            if len(index_of) == limit:
                limited = True
                continue
            index_of[key] = len(index_of)
        cell = f"{passed.labels[image]} {passed.predicted[image]}"
        cells[run_index].setdefault(cell, []).append(
            [index_of[key], round(float(passed.confidence[image]), 4)])
    thumbnails = read_thumbnails(list(index_of))
    images = [[path, *thumbnail] for (_, path), thumbnail in zip(index_of, thumbnails)]
    return images, [{"note": note, "cells": run_cells} for note, run_cells in zip(notes, cells)], limited


def selection_figure(run, passed, labels):
    """View 5's figure: what each class keeps at every τ and k of the run's pseudo_labels.json."""
    thresholds = [row["threshold"] for row in run.pseudo_labels["confidence_threshold"]["rows"]]
    ks = [row["k"] for row in run.pseudo_labels["class_balanced_top_k"]["rows"]]
    return figures.selection(labels, [kept_per_class(passed, thresholds), top_k_per_class(passed, ks)],
                             run.pseudo_labels)


def explorer_contents(out_dir, per_cell):
    """The page's data and figures for the runs in OUT, `per_cell` images per confusion cell."""
    runs = find_runs(out_dir)
    order = runs[0].metrics["own_order"]  # clip's, as Q2 asks of every run
    names = {entry["wnid"]: entry["name"] for entry in runs[0].metrics["classes"]}
    names = [names[wnid] for wnid in order]
    labels = figures.class_labels(names, order)
    passes = [read_cache(run, order) for run in runs]
    entries = [run_entry(run, passed, order) for run, passed in zip(runs, passes)]
    images, run_images, limited = embedded_images(passes, per_cell)
    for entry, entry_images in zip(entries, run_images):
        entry["images"] = entry_images
    return {
        "out": str(Path(out_dir).resolve()),
        "simulated": any(entry["simulated"] for entry in entries),
        "classes": {"wnid": order, "name": names},
        "runs": entries,
        "images": images, "images_per_cell": per_cell, "images_limited": limited,
        "image_limit": MAX_EMBEDDED_IMAGES,
        "figures": {"histogram": [figures.histogram(entry, labels, order) for entry in entries],
                    "confusion": figures.confusion_template(labels),
                    "compare": figures.comparison(entries, labels, entries[0]),
                    "selection": [selection_figure(run, passed, labels)
                                  for run, passed in zip(runs, passes)]},
    }
