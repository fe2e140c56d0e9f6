"""What the explorer shows of each run, from the files the run's analysis wrote: metrics.json and
pseudo_labels.json as written, explorer.npz for what no JSON holds for every class
(explorer/tables.py), why.json's concept gaps, and the concept-mismatched classes of clip-ca's
alignment.json. The logits (predictions.npz) are never read.

Every class is named by its position in the reference run's (clip's) own order, the order of
every view, as Q2 asks.
"""
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from analysis.explorer_tables import TABLES_FILE, read_tables
from runs.outputs import UserError, read_json
from runs import descriptors as run_folders
from runs.descriptors import REFERENCE_MODEL, run_folder_command, starter_command

# The files and keys the explorer reads; a run written before them is left out, with the command
# that brings it up to date.
RUN_FILES = {"metrics": ("metrics.json", ("num_images", "accuracy", "balanced_accuracy", "own_order",
                                          "classes", "top_confusions", "settings")),
             "pseudo_labels": ("pseudo_labels.json", ("confidence_threshold", "class_balanced_top_k",
                                                      "kept_per_class"))}


@dataclass
class RunFiles:
    """One run folder's files, as read."""
    model: str
    folder: Path
    metrics: dict
    pseudo_labels: dict
    tables: object  # explorer.tables.RunTables, the run's own class indices
    why: dict  # why.json, or {} when the run has none


def find_runs(out_dir):
    """The runs in OUT with metrics.json, in runs.find_runs' order (clip, the reference, first). A
    run the explorer cannot show (no cache, outputs of an older version, other classes than the
    first run's) is left out with a warning that names the fix."""
    out_dir = Path(out_dir)
    runs = []
    for run_id, descriptor in run_folders.find_runs(out_dir).items():
        if not (out_dir / run_id / RUN_FILES["metrics"][0]).is_file():
            continue
        run = read_run(out_dir / run_id, descriptor["model"])
        if isinstance(run, str):
            warn(run)
        elif runs and sorted(run.metrics["own_order"]) != sorted(runs[0].metrics["own_order"]):
            warn(f"{run.folder} was made on other classes than {runs[0].folder} (the page shows "
                 "one dataset's runs; the report compares each dataset's)")
        else:
            runs.append(run)
    if not runs:
        raise UserError(f"{out_dir} holds no run the explorer can show: run "
                        f"`{starter_command(REFERENCE_MODEL, ('--out', str(out_dir)))}` first.")
    return runs


def warn(problem):
    print(f"warning: {problem}; the explorer leaves that run out.", file=sys.stderr)


def outdated(path, folder, made_by):
    command = run_folder_command(folder.name, made_by, ("--from-cache", "--out", str(folder.parent)))
    return f"{path} is missing or predates this version: run `{command}`"


def read_run(folder, made_by):
    """The run's RunFiles, or what keeps the explorer from showing it; `made_by`: the --model
    that made it."""
    files = {}
    for key, (name, keys) in RUN_FILES.items():
        path = folder / name
        files[key] = read_json(path, f"{folder.name}'s {name}") if path.is_file() else {}
        if not all(required in files[key] for required in keys):
            return outdated(path, folder, made_by)
    if not (folder / TABLES_FILE).is_file():
        return outdated(folder / TABLES_FILE, folder, made_by)
    why_path = folder / "why.json"
    return RunFiles(folder.name, folder, **files, tables=read_tables(folder / TABLES_FILE),
                    why=read_json(why_path, f"{folder.name}'s why.json") if why_path.is_file() else {})


def positions(run, order):
    """[K] the position in `order` (wnids) of each of the run's own class indices."""
    position_of = {wnid: position for position, wnid in enumerate(order)}
    return np.array([position_of[entry["wnid"]] for entry in run.metrics["classes"]])


def tables_in_order(run, order):
    """The run's RunTables with classes as positions in `order`: per-class rows reordered, class
    indices mapped."""
    position = positions(run, order)
    tables = run.tables

    def by_position(rows):  # [..., K] in the run's order -> in `order`
        reordered = np.empty_like(rows)
        reordered[..., position] = rows
        return reordered

    def neighbour_rows(neighbours):
        return by_position(np.where(neighbours >= 0, position[neighbours], -1).T).T

    return replace(
        tables, cells=np.vstack([position[tables.cells[:2]], tables.cells[2:]]),
        neighbours={kind: neighbour_rows(rows) for kind, rows in tables.neighbours.items()},
        neighbour_cosines={kind: by_position(rows.T).T for kind, rows in tables.neighbour_cosines.items()},
        kept=by_position(tables.kept), kept_correct=by_position(tables.kept_correct),
        selected=by_position(tables.selected), selected_correct=by_position(tables.selected_correct),
        image_true=position[tables.image_true], image_predicted=position[tables.image_predicted])


def concept_columns(run, order, mismatched):
    """The class view's concept rows of a run whose why.json has concept gaps, in `order`: each
    class's gap (text-prototype cosine, images grouped by true label), whether its own text is
    nearest its images (else whose is), and whether Algorithm 1 flagged it (None before clip-ca
    has run); None for a run without gaps."""
    concepts = (run.why or {}).get("concepts")
    if not concepts:
        return None
    by_wnid = {entry["wnid"]: entry for entry in concepts["gap"]["by_true"]}
    entries = [by_wnid[wnid] for wnid in order]
    return {"gap": [entry["cosine"] for entry in entries],
            "own_text_nearest": [entry["own_text_nearest"] for entry in entries],
            "nearest_text": [None if entry["nearest_text"] is None else entry["nearest_text"]["name"]
                             for entry in entries],
            "mismatched": None if mismatched is None else [wnid in mismatched for wnid in order]}
