"""Each run's accuracy and prediction-count imbalance, from its metrics.json, and the tables that
show them and what produced each run."""
from datetime import datetime
from pathlib import Path

import numpy as np

import metrics
from analysis import pseudo_labels
from runs.descriptors import source_meta
from runs.kinds import REFERENCE_MODEL

from .content import Table, format_number, format_ratio


def class_arrays(run_metrics, order=None):
    """(wnids, names, true counts, predicted counts, recall with NaN) in `order` (default: as stored)."""
    by_wnid = {entry["wnid"]: entry for entry in run_metrics["classes"]}
    entries = [by_wnid[wnid] for wnid in order] if order else run_metrics["classes"]
    recall = np.array([np.nan if e["recall"] is None else e["recall"] for e in entries])
    return ([e["wnid"] for e in entries], [e["name"] for e in entries],
            np.array([e["true_count"] for e in entries]),
            np.array([e["predicted_count"] for e in entries]), recall)


def true_positives(run_metrics):
    """Correct predictions per class, as metrics.json counts them; NaN (so macro-F1 is n/a) in a
    metrics.json from before it did."""
    return np.array([entry.get("true_positives", np.nan) for entry in run_metrics["classes"]],
                    dtype=np.float64)


def run_measures(run_metrics, selection=None):
    """Accuracies, macro-F1 and prediction-count imbalance of one run, from its metrics.json,
    and, given its pseudo_labels.json, the pseudo-labels FixMatch would keep at τ = 0.95."""
    _, _, true_counts, predicted_counts, _ = class_arrays(run_metrics)
    return {"num_images": run_metrics["num_images"], "accuracy": run_metrics["accuracy"],
            "top5_accuracy": run_metrics["top5_accuracy"],
            "balanced_accuracy": run_metrics["balanced_accuracy"],
            "macro_f1": metrics.macro_f1(true_positives(run_metrics), true_counts, predicted_counts),
            "balanced_count": float(predicted_counts.sum() / len(predicted_counts)),
            **metrics.prediction_imbalance(predicted_counts), **kept_at_training_threshold(selection)}


def kept_at_training_threshold(selection):
    """{"kept_share", "kept_accuracy"} at DebiasPL's τ = 0.95 (None when unknown or none kept)."""
    row = pseudo_labels.at_threshold(selection) if selection else {}
    return {"kept_share": row.get("kept_share"), "kept_accuracy": row.get("accuracy")}


MEASURE_COLUMNS = {  # column title: (measures key, formatter)
    "images": ("num_images", str),
    "accuracy": ("accuracy", format_number),
    "top-5": ("top5_accuracy", format_number),
    "balanced acc.": ("balanced_accuracy", format_number),
    "macro-F1": ("macro_f1", format_number),
    "max/min count": ("max_min_ratio", None),  # needs the zero-class count: format_ratio
    "count std": ("count_std", lambda value: format_number(value, 2)),
    "KL to uniform (nats)": ("kl_from_uniform", format_number),
    "classes < N/(2K)": ("classes_below_half_balanced", str),
    "kept at 0.95": ("kept_share", format_number),
    "acc. of kept at 0.95": ("kept_accuracy", format_number),
}


SUMMARY_COLUMNS = ("images", "accuracy", "balanced acc.", "macro-F1", "max/min count",
                   "KL to uniform (nats)")


COMPARISON_COLUMNS = ("accuracy", "top-5", "balanced acc.", "macro-F1", "max/min count",
                      "count std", "KL to uniform (nats)", "classes < N/(2K)", "kept at 0.95",
                      "acc. of kept at 0.95")


MEASURE_NOTE = ("macro-F1: mean F1 over the classes with images (as sklearn's f1_score, "
                "average='macro', zero_division=0). Imbalance of the predicted counts over the K "
                "classes: max/min count = most over least predicted class's count, inf when a class "
                "gets no prediction; count std = population standard deviation (ddof=0); KL to "
                "uniform = sum p log(pK) of the predicted-class distribution p, in nats (0 = balanced, "
                "log K = one class takes everything); classes < N/(2K) = classes predicted fewer "
                "than half the balanced count N/K. Kept at 0.95: share of images whose top softmax "
                "probability is at least 0.95, the pseudo-labels DebiasPL's zero-shot training "
                "selects, and the accuracy of those.")


def measures_table(runs, columns, caption):
    rows = []
    for model, run in runs.items():
        if run.metrics is None:
            continue
        measures = run_measures(run.metrics, run.pseudo_labels)
        cells = [model]
        for column in columns:
            key, formatter = MEASURE_COLUMNS[column]
            cells.append(format_ratio(measures[key], measures["classes_without_predictions"])
                         if formatter is None else formatter(measures[key]))
        rows.append(cells)
    return Table(["run", *columns], rows, caption)


def weights_cell(settings):
    identity = settings.get("weights_identity", {})
    if "sha256" in identity:
        return f"{Path(identity['path']).name} (SHA-256 {identity['sha256'][:12]})"
    if "tag" in identity:
        return f"{identity['tag']} (open_clip {identity.get('open_clip', '?')})"
    return str(settings.get("weights", settings.get("provenance", "")))  # no meta: "unknown ..."


PROVENANCE_SETTINGS = {"prompts": "prompts", "class_names": "names", "branch": "branch"}  # meta key: label


def provenance_table(runs):
    """What produced each run, one row per run: model, weights, prompts or branch, precision,
    data, images and the date its logits were cached."""
    columns = ["run", "model", "weights", "prompts / branch", "precision", "data", "images", "date"]
    rows = []
    for model, run in runs.items():
        if run.metrics is None:
            rows.append([model, run.title, "not analysed yet", "", "", "", "", ""])
            continue
        settings = run.metrics.get("settings", {})
        # A training-free run carries the settings of the cache it started from.
        source = source_meta(settings) or settings
        setting = (f"on {settings.get('source_run', REFERENCE_MODEL)}'s cached logits"
                   if source is not settings else
                   "; ".join(f"{label} {settings[key]}" for key, label in PROVENANCE_SETTINGS.items()
                             if key in settings))
        cache = run.directory / "predictions.npz"
        dated = cache if cache.is_file() else run.directory / "metrics.json"
        rows.append([model, run.title, weights_cell(source), setting,
                     str(settings.get("precision", source.get("precision", ""))),
                     str(source.get("data", "")), str(run.metrics["num_images"]),
                     datetime.fromtimestamp(dated.stat().st_mtime).strftime("%Y-%m-%d")])
    shown = [index for index, column in enumerate(columns)
             if column != "precision" or any(row[index] for row in rows)]
    return Table([columns[i] for i in shown], [[row[i] for i in shown] for row in rows],
                 "What produced the results")
