"""Everything the page shows, as one JSON-ready dict: the classes in the reference run's order,
per run its numbers, confusion cells, neighbours and pseudo-labels, the embedded images, and the
plotly figures. Strings stay as the files hold them: the page shows them as text, never as HTML.
"""
from pathlib import Path

import numpy as np

import metrics
from analysis import pseudo_labels
from analysis import why
from explorer import figures
from explorer.images import image_folder, read_thumbnails, unavailable_reason
from explorer.run_data import concept_columns, find_runs, tables_in_order
from analysis.explorer_tables import MAX_EMBEDDED_IMAGES
from runs.descriptors import is_simulated, model_title
from runs.kinds import REFERENCE_MODEL

NEIGHBOUR_DECIMALS = {"literal": 7, "centered": 5}  # one more than the report shows (6 and 4)


def rounded_neighbours(neighbours, cosines, decimals):
    """Per class, [[neighbour, cosine], ...] of its defined nearest centroids."""
    return [[[int(neighbour), round(float(cosine), decimals)]
             for neighbour, cosine in zip(row, row_cosines) if neighbour >= 0]
            for row, row_cosines in zip(neighbours, cosines)]


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


def run_entry(run, tables, order, mismatched):
    """One run's numbers per class (in `order`), confusion cells, nearest centroids and concept
    gaps (`tables` in order; `mismatched`: the wnids of clip-ca's alignment.json, or None)."""
    by_wnid = {entry["wnid"]: entry for entry in run.metrics["classes"]}
    position_of = {wnid: position for position, wnid in enumerate(order)}
    kept = {entry["wnid"]: entry for entry in run.pseudo_labels["kept_per_class"]["classes"]}
    column = {key: [by_wnid[wnid][field] for wnid in order] for key, field in (
        ("predicted", "predicted_count"), ("true", "true_count"), ("precision", "precision"),
        ("recall", "recall"))}
    return {
        "model": run.model, "title": model_title(run.metrics["settings"]),
        "simulated": is_simulated(run.metrics["settings"]),
        "summary": run_summary(run, column["predicted"]), **column,
        "kept": [kept[wnid]["kept"] for wnid in order],
        "kept_correct": [kept[wnid]["kept_correct"] for wnid in order],
        "kept_threshold": run.pseudo_labels["kept_per_class"]["threshold"],
        "cells": tables.cells.tolist(),
        "top_confusions": [[position_of[cell["true"]["wnid"]], position_of[cell["predicted"]["wnid"]],
                            cell["count"], cell["share_of_true"]]
                           for cell in run.metrics["top_confusions"]],
        "neighbours": {kind: rounded_neighbours(tables.neighbours[kind], tables.neighbour_cosines[kind],
                                                NEIGHBOUR_DECIMALS[kind])
                       for kind in tables.neighbours},
        "concepts": concept_columns(run, order, mismatched),
    }


def image_candidates(runs, tables, per_cell):
    """[(rank in cell, -cell size, run, entry)] of every cell's `per_cell` most confident images
    (entries of the run's tables), for the runs whose image folder can be read, and each run's
    note (None when it can)."""
    candidates, notes = [], []
    for run_index, (run, run_tables) in enumerate(zip(runs, tables)):
        notes.append(unavailable_reason(run.metrics["settings"], per_cell))
        if notes[-1] is not None:
            continue
        chosen = np.flatnonzero(run_tables.image_rank < per_cell)
        candidates += zip(run_tables.image_rank[chosen].tolist(),
                          (-run_tables.image_cell_size[chosen]).tolist(),
                          [run_index] * len(chosen), chosen.tolist())
    return sorted(candidates), notes


def embedded_images(runs, tables, per_cell, limit=MAX_EMBEDDED_IMAGES):
    """The images the page embeds, [[path, base64 JPEG or None, why not or None]], and per run
    {"true predicted": [[image, probability], ...]} in each cell's confidence order; whether
    `limit` left images out. `tables` are the runs' RunTables in the page's order: each holds
    one image more than a page embeds, so a run with more than `limit` candidates is seen."""
    candidates, notes = image_candidates(runs, tables, per_cell)
    folders = [None if note else Path(image_folder(run.metrics["settings"])).resolve()
               for run, note in zip(runs, notes)]
    index_of, cells, limited = {}, [{} for _ in runs], False
    for _, _, run_index, entry in candidates:
        run_tables = tables[run_index]
        key = (folders[run_index], str(run_tables.image_paths[entry]))
        if key not in index_of:
            if len(index_of) == limit:
                limited = True
                continue
            index_of[key] = len(index_of)
        cell = f"{run_tables.image_true[entry]} {run_tables.image_predicted[entry]}"
        cells[run_index].setdefault(cell, []).append(
            [index_of[key], round(float(run_tables.image_confidence[entry]), 4)])
    thumbnails = read_thumbnails(list(index_of))
    images = [[path, *thumbnail] for (_, path), thumbnail in zip(index_of, thumbnails)]
    return images, [{"note": note, "cells": run_cells} for note, run_cells in zip(notes, cells)], limited


def selection_figure(run, tables, labels):
    """View 5's figure: what each class keeps at every τ and k of the run's pseudo_labels.json."""
    return figures.selection(labels, [(tables.kept, tables.kept_correct),
                                      (tables.selected, tables.selected_correct)], run.pseudo_labels)


def explorer_contents(out_dir, per_cell, commands):
    """The page's data and figures for the runs in OUT, `per_cell` images per confusion cell."""
    runs = find_runs(out_dir, commands)
    order = runs[0].metrics["own_order"]  # clip's, as Q2 asks of every run
    names = {entry["wnid"]: entry["name"] for entry in runs[0].metrics["classes"]}
    names = [names[wnid] for wnid in order]
    labels = figures.class_labels(names, order)
    tables = [tables_in_order(run, order) for run in runs]
    reference = next((run for run in runs if run.model == REFERENCE_MODEL), None)
    mismatched = why.run_mismatches(REFERENCE_MODEL, Path(out_dir) / REFERENCE_MODEL, out_dir,
                                    reference and reference.why)
    entries = [run_entry(run, run_tables, order, mismatched) for run, run_tables in zip(runs, tables)]
    images, run_images, limited = embedded_images(runs, tables, per_cell)
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
                    "selection": [selection_figure(run, run_tables, labels)
                                  for run, run_tables in zip(runs, tables)]},
    }
