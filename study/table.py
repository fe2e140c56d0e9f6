"""The study's table: one record per run (what it is, how accurate it is and how unevenly it
predicts), the same as the report's tables show it, and what each training-free method changed
against the run it debiased. runs.csv holds the records as they are."""
import numpy as np

import metrics
from analysis import why
from report.content import NOT_AVAILABLE, Table, format_number
from report.measures import class_arrays, weights_cell
from runs.descriptors import DEFAULT_CLIP_ARCHITECTURE, NO_META, SIMULATED, source_meta
from runs.kinds import CONCEPT_ALIGNED_MODEL, TRAINING_FREE, ZERO_SHOT_CLIP, run_kind

UNKNOWN_DATASET = "not recorded"  # a cache whose meta does not name its dataset


def model_label(settings):
    """The model alone, its weights aside (they have a column): "CLIP ViT-B-32 zero-shot",
    "DebiasPL (zero-shot, RN50)", "CLIP RN50 zero-shot + prior matching"."""
    model = settings.get("model")
    if settings.get("provenance") == NO_META:
        return NO_META
    kind = run_kind(model)
    if kind is None:
        return model
    if kind.nature == TRAINING_FREE:
        source = source_meta(settings)
        return f"{model_label(source) if source else NO_META} + {kind.method}"
    if kind.nature == ZERO_SHOT_CLIP:
        return f"CLIP {settings.get('architecture', DEFAULT_CLIP_ARCHITECTURE)} zero-shot"
    return kind.title


def mismatched_classes(run, out_dir):
    """The classes (wnids) Algorithm 1 found concept-mismatched for a run (why.run_mismatches,
    from the why.json the loader read); None when unknown."""
    return why.run_mismatches(run.made_by, run.directory, out_dir, run.why)


def run_record(run, mismatched):
    """runs.csv's row of an analysed run (`mismatched`: its mismatched_classes): {column: value},
    None where undefined or unknown."""
    settings = run.metrics.get("settings", {})
    _, _, true_counts, predicted, _ = class_arrays(run.metrics)
    claim = run.metrics.get("figure4_claim") or {}
    record = {
        "run": run.model, "title": run.title, "model": model_label(settings),
        "weights": weights_cell(source_meta(settings) or settings),
        "dataset": run.descriptor["dataset"], "split": run.descriptor["split"],
        "kind": run.descriptor["kind"], "source": run.descriptor["source"],
        "simulated": run.simulated, "images": run.metrics["num_images"], "classes": len(predicted),
        "accuracy": run.metrics["accuracy"], "balanced_accuracy": run.metrics["balanced_accuracy"],
        "max_predicted": int(predicted.max()), "min_predicted": int(predicted.min()),
        "never_predicted": int(np.sum(predicted == 0)),
        "kl_to_uniform": metrics.kl_from_uniform(predicted),
        "kl_to_true": metrics.kl_divergence(predicted, true_counts),
        "balanced_dataset": bool((true_counts == true_counts[0]).all()),
        "gini": metrics.gini(predicted)}
    for kind in ("literal", "centered"):
        record[f"figure4_rho_{kind}"] = claim.get(kind, {}).get("rho")
        record[f"figure4_p_{kind}"] = claim.get(kind, {}).get("p_value")
    record["mismatched_classes"] = None if mismatched is None else len(mismatched)
    return record


def shown_kl(record):
    """The KL the study shows: to uniform on a dataset whose classes hold equal numbers of images,
    else to the true class distribution."""
    return record["kl_to_uniform"] if record["balanced_dataset"] else record["kl_to_true"]


def kl_cell(record):
    """shown_kl, marked † where it is to the true class distribution."""
    return format_number(shown_kl(record)) + ("" if record["balanced_dataset"] else " †")


def run_tables(numbered):
    """Every run `numbered` {number: record} in two tables: what it is, then its accuracy and
    imbalance."""
    what = Table(["#", "run", "model", "weights", "dataset", "split", "images", "classes"],
                 [[str(number), r["run"], (f"{SIMULATED} " if r["simulated"] else "") + r["model"],
                   r["weights"], r["dataset"] or UNKNOWN_DATASET,
                   r["split"], f"{r['images']:,}", f"{r['classes']:,}"]
                  for number, r in numbered.items()], "The runs")
    measures = Table(
        ["#", "run", "accuracy", "bal. acc.", "max / min", "never pred.", "KL (nats)", "Gini",
         "mismatched"],
        [[str(number), r["run"], format_number(r["accuracy"]), format_number(r["balanced_accuracy"]),
          f"{r['max_predicted']:,} / {r['min_predicted']:,}", f"{r['never_predicted']:,}", kl_cell(r),
          format_number(r["gini"], 3),
          NOT_AVAILABLE if r["mismatched_classes"] is None else str(r["mismatched_classes"])]
         for number, r in numbered.items()],
        "Accuracy and prediction-count imbalance",
        "bal. acc.: balanced accuracy, the mean recall over the classes. max / min: the most and the "
        "least predicted class's number of predictions; never pred.: classes no image is predicted "
        "as.\n"
        "KL: of the predicted-class distribution from uniform, in nats (0 = balanced, log K = one "
        "class takes every image); † from the true class distribution instead, on a dataset whose "
        "classes hold different numbers of images (runs.csv has both).\n"
        "Gini of the predicted counts: their mean absolute difference over twice their mean (0 = "
        "balanced, (K−1)/K = one class takes every image).\n"
        f"mismatched: classes Algorithm 1 (CAP) found concept-mismatched, for zero-shot CLIP runs "
        f"whose --model {CONCEPT_ALIGNED_MODEL} run exists; {NOT_AVAILABLE} where unknown.")
    return [what, measures]


CHANGES = (("accuracy", "accuracy", 4), ("balanced acc.", "balanced_accuracy", 4),
           ("never predicted", "never_predicted", 0), ("KL to uniform", "kl_to_uniform", 4),
           ("Gini", "gini", 3))  # (column, record key, decimals)


def signed(value, decimals):
    return NOT_AVAILABLE if value is None or np.isnan(value) else f"{value:+.{decimals}f}"


def method_changes(numbered):
    """What each training-free run changed against the run it debiased (both in the study):
    None when there is none."""
    number_of = {record["run"]: number for number, record in numbered.items()}
    rows = []
    for number, record in numbered.items():
        source = numbered.get(number_of.get(record["source"]))
        if record["kind"] != TRAINING_FREE or source is None:
            continue
        rows.append([str(number), record["run"], record["model"].rpartition(" + ")[2],
                     f"#{number_of[source['run']]} {source['run']}"]
                    + [signed(record[key] - source[key], decimals) for _, key, decimals in CHANGES])
    if not rows:
        return None
    return Table(["#", "run", "method", "from"] + [f"Δ {column}" for column, _, _ in CHANGES], rows,
                 "What each training-free method changed: its run minus the run it started from "
                 "(the same images, no training)")
