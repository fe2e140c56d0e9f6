"""The study's numbers as tidy tables for the researcher's own pandas or R: runs.csv (one row per
run, the study's table at full precision) and classes.csv (one row per run and class). An
undefined or unknown value is an empty cell, booleans are true/false, an infinite one is inf."""
import csv
import io
import math

from runs.outputs import write_atomic

RUNS_FILE, CLASSES_FILE = "runs.csv", "classes.csv"


def csv_value(value):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def write_csv(path, rows):
    """rows: dicts with the same keys, the header."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(rows[0].keys())
    writer.writerows([csv_value(value) for value in row.values()] for row in rows)
    write_atomic(path, lambda file: file.write(text.getvalue().encode()))


def class_rows(run, diagnosis, mismatched):
    """classes.csv's rows of one run: each class's counts, precision and recall as metrics.json
    holds them, its concept gap (text-image cosine, images grouped by true label) where the run's
    why.json has one, and Algorithm 1's verdict where known (`mismatched`: wnids, or None)."""
    concepts = (diagnosis or {}).get("concepts")
    gaps = {entry["wnid"]: entry for entry in concepts["gap"]["by_true"]} if concepts else {}
    return [{"run": run.model, "dataset": run.descriptor["dataset"], "split": run.descriptor["split"],
             "wnid": entry["wnid"], "name": entry["name"], "true_count": entry["true_count"],
             "predicted_count": entry["predicted_count"], "true_positives": entry.get("true_positives"),
             "precision": entry["precision"], "recall": entry["recall"],
             "concept_gap": gaps.get(entry["wnid"], {}).get("cosine"),
             "own_text_nearest": gaps.get(entry["wnid"], {}).get("own_text_nearest"),
             "concept_mismatched": None if mismatched is None else entry["wnid"] in mismatched}
            for entry in run.metrics["classes"]]


def write_tidy_tables(out_dir, records, class_tables):
    """OUT/runs.csv from the runs' records (study.table.run_record) and OUT/classes.csv from their
    class_rows; returns both paths."""
    write_csv(out_dir / RUNS_FILE, records)
    write_csv(out_dir / CLASSES_FILE, [row for rows in class_tables for row in rows])
    return out_dir / RUNS_FILE, out_dir / CLASSES_FILE
