"""What the explorer shows of a run that no JSON holds, computed by the analysis from its one pass
over the logits and written beside metrics.json as RUN/explorer.npz: the explorer never reads
the logits again (it took 83 s to reread a 1.28M x 1,000 cache).

- the non-zero cells of the confusion matrix;
- every class's nearest centroids (by pseudo-label), literal and centered;
- the pseudo-labels each class keeps at every threshold τ and every k of pseudo_labels.json;
- the images the page may embed: each confusion cell's most confident first, every cell's first
  before any cell's second, larger cells first; MAX_EMBEDDED_IMAGES + 1 of them, one more than
  a page embeds, so the page knows when its limit left some out.

Classes are the run's own class indices (metrics.json's "classes" order); the explorer maps them
to its positions. numpy only (no plotly): the analysis imports it.
"""
import numpy as np

import metrics
from analysis import pseudo_labels
from runs.tables import RunTables

# Images embedded in one page at most, whatever --thumbnails asks per cell: at ~3 KB each, 30 MB.
MAX_EMBEDDED_IMAGES = 10_000


def nearest_table(cosine, count):
    """Each class's `count` nearest other classes by `cosine` [K, K] (NaN where a centroid is
    undefined), cosine descending, ties by class index: ([K, count] classes, -1 where fewer are
    defined; [K, count] cosines, NaN there). A class without a centroid has none. One sort of the
    matrix instead of K calls of metrics.nearest_centroids (minutes at 1,000 classes)."""
    similarity = np.nan_to_num(np.array(cosine, dtype=np.float64), nan=-np.inf)
    np.fill_diagonal(similarity, -np.inf)
    ranked = np.argsort(-similarity, axis=1, kind="stable")[:, :count]  # stable: ties by index
    cosines = np.take_along_axis(similarity, ranked, axis=1)
    defined = np.isfinite(cosines) & ~np.isnan(np.diagonal(cosine))[:, None]
    return np.where(defined, ranked, -1), np.where(defined, cosines, np.nan)


def per_threshold(predicted, labels, masks, num_classes):
    """[masks, K] images predicted as each class under each mask, and [masks, K] of them correct."""
    correct = predicted == labels
    return (np.array([metrics.class_counts(predicted[mask], num_classes) for mask in masks]),
            np.array([metrics.class_counts(predicted[mask & correct], num_classes) for mask in masks]))


def image_order(predicted, labels, confidence, num_classes, limit):
    """(the first `limit` images in the page's order: rank in their cell, then larger cells first,
    then image index; their rank; their cell's size)."""
    cell = labels * num_classes + predicted
    # class_ranks ranks images within any integer groups: here the cells instead of the classes.
    ranks = pseudo_labels.class_ranks(confidence, cell)
    _, cell_index, cell_sizes = np.unique(cell, return_inverse=True, return_counts=True)
    sizes = cell_sizes[cell_index]
    rows = np.lexsort((np.arange(len(cell)), -sizes, ranks))[:limit]
    return rows, ranks[rows], sizes[rows]


def explorer_tables(predicted, labels, confidence, confusion, centroid_cosines, paths,
                    neighbour_count):
    """A run's RunTables from the analysis' pass: pseudo-labels, true labels and confidences [N],
    the confusion matrix [K, K], the centroid cosines {"literal", "centered": [K, K]} and the
    cache's paths [N]."""
    num_classes = len(confusion)
    labels = np.asarray(labels, dtype=np.int64)
    neighbours, cosines = {}, {}
    for kind, cosine in centroid_cosines.items():
        neighbours[kind], cosines[kind] = nearest_table(cosine, neighbour_count)
    kept = per_threshold(predicted, labels, [confidence >= threshold for threshold
                                             in pseudo_labels.THRESHOLDS], num_classes)
    ranks = pseudo_labels.class_ranks(confidence, predicted)
    selected = per_threshold(predicted, labels, [ranks < k for k in pseudo_labels.TOP_KS], num_classes)
    rows, image_ranks, cell_sizes = image_order(predicted, labels, confidence, num_classes,
                                                MAX_EMBEDDED_IMAGES + 1)
    return RunTables(
        cells=np.array(np.nonzero(confusion) + (confusion[np.nonzero(confusion)],), dtype=np.int64),
        neighbours=neighbours, neighbour_cosines=cosines, kept=kept[0], kept_correct=kept[1],
        selected=selected[0], selected_correct=selected[1], image_rows=rows,
        image_paths=np.asarray(paths)[rows].astype(str), image_true=labels[rows],
        image_predicted=np.asarray(predicted)[rows], image_confidence=np.asarray(confidence)[rows],
        image_rank=image_ranks, image_cell_size=cell_sizes)
