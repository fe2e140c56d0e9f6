"""What the explorer shows of each run, from the files the run wrote: metrics.json and
pseudo_labels.json as written, and from predictions.npz what no JSON holds for every class (the
whole confusion matrix, every class's nearest centroids, the pseudo-labels kept per class at
every threshold and k, the most confident images of every confusion cell).

Every class is named by its position in the reference run's (clip's) own order, the order of
every view, as Q2 asks. The cache is read in row blocks (cache.row_blocks), so a training
split's cache is never whole in memory.
"""
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import metrics
import pseudo_labels
from analysis import NEIGHBOR_COUNT
from cache import load_predictions, row_blocks
from outputs import UserError, read_json
from runs import MODEL_TITLES, REFERENCE_MODEL

# The files and keys the explorer reads; a run written before them is left out, with the command
# that brings it up to date.
RUN_FILES = {"metrics": ("metrics.json", ("num_images", "accuracy", "balanced_accuracy", "own_order",
                                          "classes", "top_confusions", "settings")),
             "pseudo_labels": ("pseudo_labels.json", ("confidence_threshold", "class_balanced_top_k",
                                                      "kept_per_class"))}


@dataclass
class RunFiles:
    """One run folder's JSON files, as read."""
    model: str
    folder: Path
    metrics: dict
    pseudo_labels: dict


@dataclass
class CachePass:
    """What one pass over a run's logits gives, per image and per class, classes as positions."""
    labels: np.ndarray  # [N] true class
    predicted: np.ndarray  # [N] pseudo-label
    confidence: np.ndarray  # [N] softmax probability of the pseudo-label
    centroids: np.ndarray  # [K, K] mean logits by pseudo-label, rows by position; NaN when empty
    paths: np.ndarray  # [N] relative to the run's image folder
    meta: dict


def find_runs(out_dir):
    """The runs in OUT with metrics.json, in MODEL_TITLES' order (clip, the reference, first). A
    run the explorer cannot show (no cache, outputs of an older version, other classes than the
    first run's) is left out with a warning that names the fix."""
    out_dir = Path(out_dir)
    runs = []
    for model in MODEL_TITLES:
        if not (out_dir / model / RUN_FILES["metrics"][0]).is_file():
            continue
        run = read_run(out_dir / model)
        if isinstance(run, str):
            warn(run)
        elif runs and sorted(run.metrics["own_order"]) != sorted(runs[0].metrics["own_order"]):
            warn(f"{run.folder} was made on other classes than {runs[0].folder}")
        else:
            runs.append(run)
    if not runs:
        raise UserError(f"{out_dir} holds no run the explorer can show: run `python starter.py "
                        f"--model {REFERENCE_MODEL} --out {out_dir}` first.")
    return runs


def warn(problem):
    print(f"warning: {problem}; the explorer leaves that run out.", file=sys.stderr)


def read_run(folder):
    """The run's RunFiles, or what keeps the explorer from showing it."""
    if not (folder / "predictions.npz").is_file():
        return f"{folder} has no predictions.npz, which the explorer reads"
    files = {}
    for key, (name, keys) in RUN_FILES.items():
        path = folder / name
        files[key] = read_json(path, f"{folder.name}'s {name}") if path.is_file() else {}
        if not all(required in files[key] for required in keys):
            return (f"{path} is missing or predates this version: run `python starter.py --model "
                    f"{folder.name} --from-cache --out {folder.parent}`")
    return RunFiles(folder.name, folder, **files)


def read_cache(run, order):
    """One pass over the run's cached logits, classes as positions in `order` (wnids)."""
    predictions = load_predictions(run.folder / "predictions.npz")
    position_of = {wnid: position for position, wnid in enumerate(order)}
    position = np.array([position_of[str(wnid)] for wnid in predictions.wnids])
    count, num_classes = predictions.logits.shape
    predicted = np.empty(count, dtype=np.int64)
    confidence = np.empty(count)
    sums = np.zeros((num_classes, num_classes))
    for rows in row_blocks(count, num_classes):
        logits = predictions.logits[rows]
        predicted[rows] = metrics.predicted_labels(logits)
        confidence[rows] = pseudo_labels.top_probability(logits)
        sums += metrics.group_sums(logits, predicted[rows], num_classes)
    centroids = metrics.group_means(sums, metrics.class_counts(predicted, num_classes))
    centroids_by_position = np.empty_like(centroids)
    centroids_by_position[position] = centroids
    return CachePass(labels=position[predictions.labels], predicted=position[predicted],
                     confidence=confidence, centroids=centroids_by_position,
                     paths=predictions.paths, meta=predictions.meta)


def nearest_centroid_table(centroids, count=NEIGHBOR_COUNT):
    """metrics.nearest_centroids for every class at once: [(neighbour, cosine), ...] per class,
    the `count` most cosine-similar defined centroids, cosine descending, ties by class index;
    empty for a class whose own centroid is undefined. One matrix product instead of K calls
    (each K x K: minutes at 1,000 classes and four runs)."""
    norms = np.linalg.norm(centroids, axis=1)
    defined = np.isfinite(norms) & (norms > 0)
    unit = np.zeros_like(centroids)
    unit[defined] = centroids[defined] / norms[defined, None]
    similarity = unit @ unit.T
    similarity[:, ~defined] = -np.inf
    np.fill_diagonal(similarity, -np.inf)
    ranked = np.argsort(-similarity, axis=1, kind="stable")[:, :count]  # stable: ties by index
    return [[(int(j), float(similarity[i, j])) for j in ranked[i] if np.isfinite(similarity[i, j])]
            if defined[i] else [] for i in range(len(centroids))]


def kept_per_class(passed, thresholds):
    """[T, K] images kept (top probability >= τ) and [T, K] of them correct, per threshold."""
    num_classes = len(passed.centroids)
    correct = passed.predicted == passed.labels
    kept = [passed.confidence >= threshold for threshold in thresholds]
    return (np.array([metrics.class_counts(passed.predicted[mask], num_classes) for mask in kept]),
            np.array([metrics.class_counts(passed.predicted[mask & correct], num_classes)
                      for mask in kept]))


def top_k_per_class(passed, ks):
    """[k, K] images selected (each class's k most confident pseudo-labels) and [k, K] of them
    correct, per k."""
    num_classes = len(passed.centroids)
    ranks = pseudo_labels.class_ranks(passed.confidence, passed.predicted)
    correct = passed.predicted == passed.labels
    return (np.array([metrics.class_counts(passed.predicted[ranks < k], num_classes) for k in ks]),
            np.array([metrics.class_counts(passed.predicted[(ranks < k) & correct], num_classes)
                      for k in ks]))


def confusion_cells(passed):
    """The non-zero cells of the confusion matrix: (true positions, predicted positions, counts)."""
    num_classes = len(passed.centroids)
    cells, counts = np.unique(passed.labels * num_classes + passed.predicted, return_counts=True)
    return cells // num_classes, cells % num_classes, counts


def cell_images(passed, per_cell):
    """Each confusion cell's `per_cell` most confident images: (image indices, their rank in
    their cell, the size of their cell)."""
    num_classes = len(passed.centroids)
    cell = passed.labels * num_classes + passed.predicted
    # class_ranks ranks images within any integer groups: here the cells instead of the classes.
    ranks = pseudo_labels.class_ranks(passed.confidence, cell)
    chosen = np.flatnonzero(ranks < per_cell)
    return chosen, ranks[chosen], metrics.class_counts(cell, num_classes ** 2)[cell[chosen]]
