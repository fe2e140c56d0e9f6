"""Pseudo-label metrics on logits: counts, precision, recall, confusion, centroid similarity.

Pure numpy (no torch) so that analysis from a cache stays fast. Arrays in, arrays out; class
indices are always 0..K-1 and K is passed explicitly, so a class that no image belongs to and no
image is predicted as still has its row, its column and its (undefined) values.
Undefined values (precision of a class nobody predicted, recall of a class without images) are
NaN here and null in JSON, never 0.
"""
import numpy as np


def predicted_labels(logits):
    """Arg-max class per image: the pseudo-label."""
    return np.asarray(logits).argmax(axis=1)


def class_counts(labels, num_classes):
    """Number of images per class index, including classes with none."""
    return np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes)


def prediction_order(predicted_counts):
    """Class indices by number of predictions, descending; ties by class index (stable sort)."""
    return np.argsort(-np.asarray(predicted_counts), kind="stable")


def confusion_matrix(labels, predictions, num_classes):
    """[K, K] counts: rows are true classes, columns predicted classes (sklearn's convention)."""
    flat = np.asarray(labels, dtype=np.int64) * num_classes + np.asarray(predictions, dtype=np.int64)
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _ratio_or_nan(numerator, denominator):
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    out = np.full(numerator.shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def precision_recall(confusion):
    """Per-class precision and recall from a confusion matrix; NaN where undefined."""
    true_positives = np.diag(confusion)
    return _ratio_or_nan(true_positives, confusion.sum(axis=0)), recall(true_positives, confusion.sum(axis=1))


def recall(true_positives, true_counts):
    """Per-class recall from the counts; NaN for a class without images."""
    return _ratio_or_nan(true_positives, true_counts)


def top_k_hits(logits, labels, k):
    """Whether each image's true class is among its k highest logits [N] (k capped at K). Ties
    rank the higher class index first, as scikit-learn's top_k_accuracy_score does.

    Counting the classes ahead of the true one needs no sort: two comparisons per logit."""
    logits = np.asarray(logits)
    labels = np.asarray(labels, dtype=np.int64)
    own = logits[np.arange(len(logits)), labels][:, None]
    ahead = np.count_nonzero(logits > own, axis=1)
    tied = np.flatnonzero(np.count_nonzero(logits == own, axis=1) > 1)  # rows tying with another class
    if len(tied):
        later = np.arange(logits.shape[1]) > labels[tied, None]
        ahead[tied] += np.count_nonzero((logits[tied] == own[tied]) & later, axis=1)
    return ahead < k


def top_k_accuracy(logits, labels, k):
    """Fraction of images whose true class is among the k highest logits (k capped at K)."""
    return float(np.mean(top_k_hits(logits, labels, k)))


def accuracy(confusion):
    """Fraction of images on the confusion matrix's diagonal (0 for no images)."""
    return float(np.trace(confusion) / max(np.sum(confusion), 1))


def balanced_accuracy(recall):
    """Mean recall over the classes that have images (sklearn's balanced_accuracy_score)."""
    return float(np.nanmean(recall))


def group_sums(values, groups, num_groups):
    """[num_groups, D] float64: the sum of the rows of `values` [N, D] in each group (0 where
    none), in row order within a group; block sums of the same rows add up to the whole's."""
    groups = np.asarray(groups, dtype=np.int64)
    sums = np.zeros((num_groups, np.shape(values)[1]))
    by_group = np.argsort(groups, kind="stable")
    ordered = np.asarray(np.asarray(values)[by_group], dtype=np.float64)
    present, starts, sizes = np.unique(groups[by_group], return_index=True, return_counts=True)
    # One contiguous run at a time: np.add.reduceat over rows is 3-4 times slower, np.add.at 10.
    for group, start, size in zip(present, starts, sizes):
        sums[group] = ordered[start:start + size].sum(axis=0)
    return sums


def group_means(sums, sizes):
    """Mean rows [G, D] from the groups' sums [G, D] and sizes [G]; NaN rows for empty groups."""
    return _ratio_or_nan(sums, np.broadcast_to(np.asarray(sizes)[:, None], np.shape(sums)))


def class_centroids(logits, groups, num_classes):
    """Mean logit vector of the images in each group; NaN rows for empty groups."""
    return group_means(group_sums(logits, groups, num_classes), class_counts(groups, num_classes))


def centered_centroids(centroids):
    """Class centroids of the logits after subtracting each image's mean logit over the K classes.

    That shift leaves the softmax, hence every prediction, unchanged; it removes the large offset
    that CLIP's logits (100 x cosine) all share and that pushes raw centroids' cosines towards 1.
    The mean of the shifted logits is the raw centroid minus its own mean over the K classes
    (both are linear), so no shifted copy of the [N, K] logits is made. NaN rows stay NaN.
    """
    return centroids - centroids.mean(axis=1, keepdims=True)


def nearest_centroids(centroids, query, count=10):
    """The `count` classes whose centroids are most cosine-similar to class `query`'s.

    Excludes the query itself and classes whose centroid is undefined (no images in their group).
    Returns (class indices, cosines), sorted by cosine descending, ties by class index; both empty
    when the query's own centroid is undefined.
    """
    norms = np.linalg.norm(centroids, axis=1)
    unit = _ratio_or_nan(centroids, np.broadcast_to(norms[:, None], centroids.shape))
    if np.isnan(unit[query]).any():
        return np.array([], dtype=np.int64), np.array([])
    similarity = unit @ unit[query]
    candidates = np.flatnonzero(~np.isnan(similarity) & (np.arange(len(similarity)) != query))
    ranked = candidates[np.lexsort((candidates, -similarity[candidates]))][:count]
    return ranked, similarity[ranked]


def largest_confusions(confusion, count, true_class=None, predicted_class=None):
    """The `count` largest non-zero off-diagonal cells of a confusion matrix: who steals from whom.

    With true_class, only that row (where its images go); with predicted_class, only that column
    (which classes' images it takes). Returns (true indices, predicted indices, counts), largest
    first, ties by true class index, then predicted class index.
    """
    confusion = np.asarray(confusion)
    selected = np.ones(confusion.shape, dtype=bool)
    np.fill_diagonal(selected, False)
    if true_class is not None:
        selected[np.arange(len(confusion)) != true_class] = False
    if predicted_class is not None:
        selected[:, np.arange(confusion.shape[1]) != predicted_class] = False
    flat = confusion.ravel()
    cells = np.flatnonzero(selected.ravel() & (flat > 0))
    # lexsort's last key is the primary one; flat indices order ties row-major.
    cells = cells[np.lexsort((cells, -flat[cells]))][:count]
    rows, columns = np.unravel_index(cells, confusion.shape)
    return rows, columns, flat[cells]


# Run-level comparison: overall quality and how unevenly the predictions spread over classes.

def macro_f1(true_positives, true_counts, predicted_counts):
    """Mean F1 over the classes that have images; NaN when no class has any.

    Same value as sklearn's f1_score(average='macro', labels=<classes with images>,
    zero_division=0): per class F1 = 2·TP / (images + predictions), which is never 0/0 for a
    class with images, and is 0 for a class with images that nobody predicts.
    """
    true_positives = np.asarray(true_positives, dtype=np.float64)
    true_counts = np.asarray(true_counts, dtype=np.float64)
    has_images = true_counts > 0
    if not has_images.any():
        return float("nan")
    f1 = 2 * true_positives[has_images] / (true_counts[has_images]
                                           + np.asarray(predicted_counts)[has_images])
    return float(f1.mean())


def max_min_count_ratio(predicted_counts):
    """Most predicted class's count over least predicted's: inf when some class gets no
    prediction (and others do), NaN when there are no predictions at all."""
    counts = np.asarray(predicted_counts, dtype=np.float64)
    if counts.size == 0 or counts.max() == 0:
        return float("nan")
    return float("inf") if counts.min() == 0 else float(counts.max() / counts.min())


def kl_from_uniform(predicted_counts):
    """KL(p || uniform) in nats of the predicted-class distribution p over the K classes.

    sum_k p_k log(p_k K), with 0 log 0 = 0: 0 when balanced, log K when every image gets one
    class. NaN when there are no predictions.
    """
    counts = np.asarray(predicted_counts, dtype=np.float64)
    if counts.size == 0 or counts.sum() == 0:
        return float("nan")
    p = counts[counts > 0] / counts.sum()
    return float(np.sum(p * np.log(p * counts.size)))


def kl_divergence(counts, reference_counts):
    """KL(p || q) in nats of the distributions p and q that two count vectors over the same K
    classes make (a run's predicted counts against its true counts, say), with 0 log 0 = 0.

    0 when p = q; inf when p puts mass on a class q has none of; NaN when either holds no counts.
    With equal reference counts it is kl_from_uniform.
    """
    counts = np.asarray(counts, dtype=np.float64)
    reference = np.asarray(reference_counts, dtype=np.float64)
    if counts.shape != reference.shape:
        raise ValueError(f"counts over {counts.shape} and {reference.shape} classes")
    if counts.sum() == 0 or reference.sum() == 0:
        return float("nan")
    mass = counts > 0
    if (reference[mass] == 0).any():
        return float("inf")
    p, q = counts[mass] / counts.sum(), reference[mass] / reference.sum()
    return float(np.sum(p * np.log(p / q)))


def gini(counts):
    """Gini coefficient of a count vector: the mean absolute difference between any two classes'
    counts over twice the mean count. 0 when every class has the same count, (K-1)/K when one
    class has them all; NaN when there are no classes or no counts.

    From the counts sorted ascending, x_1 <= ... <= x_K: sum_i (2i - K - 1) x_i / (K sum_i x_i),
    which is the pairwise definition without its K x K differences.
    """
    counts = np.sort(np.asarray(counts, dtype=np.float64))
    if counts.size == 0 or counts.sum() == 0:
        return float("nan")
    ranks = np.arange(1, counts.size + 1)
    return float(np.sum((2 * ranks - counts.size - 1) * counts) / (counts.size * counts.sum()))


def classes_below_balanced(predicted_counts, fraction=0.5):
    """Number of classes predicted fewer than `fraction` x N/K times (N predictions, K classes)."""
    counts = np.asarray(predicted_counts, dtype=np.float64)
    if counts.size == 0:
        return 0
    return int(np.sum(counts < fraction * counts.sum() / counts.size))


def prediction_imbalance(predicted_counts):
    """The prediction-count imbalance numbers of a run, from its per-class predicted counts.

    std is the population standard deviation (ddof=0) of the counts; KL is in nats.
    """
    counts = np.asarray(predicted_counts)
    return {"max_min_ratio": max_min_count_ratio(counts),
            "classes_without_predictions": int(np.sum(counts == 0)),
            "count_std": float(np.std(counts)) if counts.size else float("nan"),
            "kl_from_uniform": kl_from_uniform(counts),
            "classes_below_half_balanced": classes_below_balanced(counts, 0.5)}
