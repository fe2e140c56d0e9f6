"""Which pseudo-labels a semi-supervised learner would train on: the two usual selection rules
applied to one run's logits, with how many images each keeps, how accurate and how balanced.

- Confidence threshold (FixMatch; DebiasPL's zero-shot training keeps CLIP's pseudo-labels whose
  top probability is at least 0.95).
- Class-balanced top-k (UPL, FPL): for each class, the k images predicted as it with the highest
  probability.

The probability is the softmax of the run's cached logits over the dataset's K classes. For clip
that is CLIP's own probability (its logits are 100 × cosine); debiaspl's cache keeps only the
dataset's columns of its 1,000 ImageNet-1k logits, so its softmax is renormalised over the
dataset's classes (higher than the 1,000-way one); for clip-la and clip-pm it is the softmax of
the debiased logits. Pure numpy, like metrics.py.
"""
import numpy as np

import metrics

THRESHOLDS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
TRAINING_THRESHOLD = 0.95  # DebiasPL's zero-shot training (and FixMatch's default)
TOP_KS = (1, 2, 4, 8, 16, 32)
PROBABILITY_NOTE = (
    "probability = softmax of this run's cached logits over the dataset's classes: CLIP's own "
    "probability for clip (its logits are 100 x cosine); for debiaspl, whose cache keeps only the "
    "dataset's columns of its 1,000 ImageNet-1k logits, renormalised over the dataset's classes; "
    "for clip-la and clip-pm, the softmax of the debiased logits")


def top_probability(logits):
    """Softmax probability of each image's arg-max class [N], in float64."""
    shifted = np.array(logits, dtype=np.float64)  # one copy, worked on in place
    shifted -= shifted.max(axis=1, keepdims=True)
    return 1.0 / np.exp(shifted, out=shifted).sum(axis=1)


def none_if_not_finite(value):
    return float(value) if np.isfinite(value) else None


def accuracy_or_none(correct):
    return float(np.mean(correct)) if len(correct) else None


def threshold_selection(confidence, predicted, labels, num_classes, thresholds=THRESHOLDS):
    """One row per threshold τ: what keeping the images with top probability >= τ gives.

    accuracy is null when no image is kept; max_min_ratio (most over least kept class) is null
    when some class keeps no image (infinite: see classes_without_kept) or none is kept."""
    rows = []
    for threshold in thresholds:
        kept = confidence >= threshold
        counts = metrics.class_counts(predicted[kept], num_classes)
        rows.append({"threshold": float(threshold), "kept": int(kept.sum()),
                     "kept_share": float(kept.mean()) if len(kept) else 0.0,
                     "accuracy": accuracy_or_none(predicted[kept] == labels[kept]),
                     "classes_without_kept": int(np.sum(counts == 0)),
                     "kl_from_uniform": none_if_not_finite(metrics.kl_from_uniform(counts)),
                     "max_min_ratio": none_if_not_finite(metrics.max_min_count_ratio(counts))})
    return rows


def class_ranks(confidence, predicted):
    """Each image's rank [N] among the images predicted as its class, by top probability
    descending (0 = most confident); ties by image index."""
    by_class = np.lexsort((np.arange(len(predicted)), -confidence, predicted))
    sorted_classes = predicted[by_class]
    class_starts = np.flatnonzero(np.r_[True, sorted_classes[1:] != sorted_classes[:-1]])
    group_sizes = np.diff(np.r_[class_starts, len(by_class)])
    ranks = np.empty(len(predicted), dtype=np.int64)
    ranks[by_class] = np.arange(len(by_class)) - np.repeat(class_starts, group_sizes)
    return ranks


def class_balanced_selection(confidence, predicted, labels, num_classes, ks=TOP_KS):
    """One row per k: for every class, the k images predicted as it with the highest probability
    (all of them when fewer are predicted as it). accuracy is null when none is selected."""
    ranks = class_ranks(confidence, predicted)
    predicted_counts = metrics.class_counts(predicted, num_classes)
    rows = []
    for k in ks:
        selected = ranks < k
        rows.append({"k": int(k), "selected": int(selected.sum()),
                     "selected_share": float(selected.mean()) if len(selected) else 0.0,
                     "accuracy": accuracy_or_none(predicted[selected] == labels[selected]),
                     "classes_below_k": int(np.sum(predicted_counts < k))})
    return rows


def summarize(confidence, predicted, labels, wnids, names, order, model):
    """pseudo_labels.json from each image's top probability, pseudo-label and true label [N]:
    both rules' tables, and the images kept per class at TRAINING_THRESHOLD in `order` (wnids:
    the run's figure order, metrics.json's "order")."""
    labels = np.asarray(labels)
    num_classes = len(wnids)
    kept = confidence >= TRAINING_THRESHOLD
    counts = metrics.class_counts(predicted[kept], num_classes)
    correct = metrics.class_counts(predicted[kept & (predicted == labels)], num_classes)
    index_of = {str(wnid): index for index, wnid in enumerate(wnids)}
    return {
        "model": model,
        "num_images": int(len(labels)),
        "probability": PROBABILITY_NOTE,
        "confidence_threshold": {
            "rule": "keep the images whose top probability is >= threshold (FixMatch)",
            "rows": threshold_selection(confidence, predicted, labels, num_classes)},
        "class_balanced_top_k": {
            "rule": "for every class, the k images predicted as it with the highest probability, "
                    "fewer when fewer are predicted as it (UPL, FPL)",
            "rows": class_balanced_selection(confidence, predicted, labels, num_classes)},
        "kept_per_class": {
            "threshold": TRAINING_THRESHOLD,
            "order": "the run's figure order (metrics.json's order)",
            "classes": [{"wnid": wnid, "name": str(names[index_of[wnid]]),
                         "kept": int(counts[index_of[wnid]]),
                         "kept_correct": int(correct[index_of[wnid]])} for wnid in order]},
    }


def at_threshold(pseudo_labels_json, threshold=TRAINING_THRESHOLD):
    """The row of pseudo_labels.json's confidence-threshold table at `threshold` (default 0.95):
    the comparison table's "kept at 0.95" is its kept_share, "accuracy of kept at 0.95" its
    accuracy (None when no image is kept)."""
    for row in pseudo_labels_json["confidence_threshold"]["rows"]:
        if row["threshold"] == threshold:
            return row
    raise KeyError(f"pseudo_labels.json has no row for threshold {threshold}")
