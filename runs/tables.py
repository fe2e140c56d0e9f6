"""The format of RUN/explorer.npz, what the explorer shows of a run that no JSON holds: written
by the analysis (analysis/explorer_tables.py computes it), read by the run-folder loader for the
explorer. numpy only.
"""
from dataclasses import dataclass

import numpy as np

from runs.outputs import write_atomic

TABLES_FILE = "explorer.npz"


@dataclass
class RunTables:
    """One run's explorer.npz. Class indices are the run's own, or positions once reordered."""
    cells: np.ndarray  # [3, C] int64: true class, predicted class, images, of the non-zero cells
    neighbours: dict  # {"literal", "centered"}: [K, n] int64 nearest classes, -1 past the defined ones
    neighbour_cosines: dict  # {"literal", "centered"}: [K, n] float64 their cosines, NaN past them
    kept: np.ndarray  # [thresholds, K] int64 images kept at each of pseudo_labels.THRESHOLDS
    kept_correct: np.ndarray  # [thresholds, K] int64 of them correct
    selected: np.ndarray  # [ks, K] int64 selected by class-balanced top-k at each of TOP_KS
    selected_correct: np.ndarray  # [ks, K] int64 of them correct
    image_rows: np.ndarray  # [M] int64: the images, in the order above (rows of the cache)
    image_paths: np.ndarray  # [M] str: their paths relative to the run's image folder
    image_true: np.ndarray  # [M] int64
    image_predicted: np.ndarray  # [M] int64
    image_confidence: np.ndarray  # [M] float64: softmax probability of the pseudo-label
    image_rank: np.ndarray  # [M] int64: rank in its cell by confidence (0 = most confident)
    image_cell_size: np.ndarray  # [M] int64: images in its cell


def flat_arrays(tables):
    """{name: array} of RunTables for np.savez (the dicts' entries as name_kind)."""
    arrays = {}
    for name, value in vars(tables).items():
        if isinstance(value, dict):
            arrays.update({f"{name}_{kind}": array for kind, array in value.items()})
        else:
            arrays[name] = value
    return arrays


def write_tables(path, tables):
    """RUN/explorer.npz, atomically."""
    write_atomic(path, lambda file: np.savez(file, **flat_arrays(tables)))


def read_tables(path):
    """RunTables from RUN/explorer.npz."""
    with np.load(path, allow_pickle=False) as archive:
        arrays = dict(archive)
    kinds = ("literal", "centered")
    return RunTables(
        neighbours={kind: arrays.pop(f"neighbours_{kind}") for kind in kinds},
        neighbour_cosines={kind: arrays.pop(f"neighbour_cosines_{kind}") for kind in kinds},
        **arrays)
