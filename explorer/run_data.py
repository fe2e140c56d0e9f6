"""What the explorer shows of each run, from the files the run's analysis wrote: metrics.json and
pseudo_labels.json as written, explorer.npz for what no JSON holds for every class
(explorer/tables.py), why.json's concept gaps, and the concept-mismatched classes of clip-ca's
alignment.json. The logits (predictions.npz) are never read.

Every class is named by its position in the reference run's (clip's) own order, the order of
every view, as Q2 asks.
"""
import sys
from dataclasses import replace

import numpy as np

from runs import loader
from runs.errors import NoAnalysedRun


def find_runs(out_dir, commands):
    """The analysed runs in OUT (runs/loader.py), in runs.find_runs' order (clip, the reference,
    first). A run the explorer cannot show (outputs of an older version, other classes than the
    first run's) is left out with a warning that names the fix (`commands`:
    cli.commands.Commands)."""
    runs = []
    for run in loader.load_runs(out_dir).values():
        if not run.analysed:
            continue
        if run.outdated:
            warn(f"{run.directory / run.outdated[0]} is missing or predates this version: run "
                 f"`{commands.run(run.model, run.made_by, from_cache=True)}`")
        elif runs and sorted(run.metrics["own_order"]) != sorted(runs[0].metrics["own_order"]):
            warn(f"{run.directory} was made on other classes than {runs[0].directory} (the page "
                 "shows one dataset's runs; the report compares each dataset's)")
        else:
            runs.append(run)
    if not runs:
        raise NoAnalysedRun(out_dir, "the explorer")
    return runs


def warn(problem):
    print(f"warning: {problem}; the explorer leaves that run out.", file=sys.stderr)


def positions(run, order):
    """[K] the position in `order` (wnids) of each of the run's own class indices."""
    position_of = {wnid: position for position, wnid in enumerate(order)}
    return np.array([position_of[entry["wnid"]] for entry in run.metrics["classes"]])


def tables_in_order(run, order):
    """The run's RunTables with classes as positions in `order`: per-class rows reordered, class
    indices mapped."""
    position = positions(run, order)
    tables = run.tables()

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
