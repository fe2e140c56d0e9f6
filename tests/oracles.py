"""The tests' independent computations, one per quantity, written from the definitions with no
code of the tool: the tests compare the tool's outputs with these.

- softmax, mean_softmax: float64, shifted by each row's maximum;
- sinkhorn: plain Sinkhorn-Knopp, the fixed point prior matching (clip-pm) must reach;
- group_means, nearest_centroids: class centroids and their nearest neighbours by cosine;
- pseudo_label_tables: FixMatch's confidence-threshold and the class-balanced top-k selections;
- open_clip_zero_shot_logits: open_clip's own zero-shot pipeline, by hand.
"""
import math

import numpy as np
import pytest


def softmax(logits):
    logits = np.asarray(logits, dtype=np.float64)
    exponentials = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exponentials / exponentials.sum(axis=1, keepdims=True)


def mean_softmax(logits):
    return softmax(logits).mean(axis=0)


def sinkhorn(logits, target, tolerance=1e-12, max_iterations=100_000):
    """Plain Sinkhorn-Knopp on the Gibbs kernel K = softmax(logits) (cost -log softmax, ε = 1):
    scalings u, v such that diag(u) K diag(v) has rows summing to 1/N and columns to `target`.
    Stops when the columns of the row-normalised plan, the mean softmax of logits - b with
    v = exp(-b), are within `tolerance` of the target. Returns (b centred on 0, the plan,
    iterations)."""
    kernel = softmax(logits)
    rows = np.full(len(kernel), 1 / len(kernel))
    v = np.ones(kernel.shape[1])
    for iteration in range(max_iterations):
        u = rows / (kernel @ v)
        plan = u[:, None] * kernel * v[None, :]
        if np.abs(plan.sum(axis=0) - target).max() < tolerance:
            bias = -np.log(v)
            return bias - bias.mean(), plan, iteration
        v = target / (kernel.T @ u)
    raise AssertionError("plain Sinkhorn-Knopp did not converge")


def group_means(values, groups, num_groups):
    """[num_groups, D]: the mean of each group's rows, NaN for a group without rows."""
    values = np.asarray(values, dtype=np.float64)
    means = np.full((num_groups, values.shape[1]), np.nan)
    for group in range(num_groups):
        members = [row for row, member_group in zip(values, groups) if member_group == group]
        if members:
            means[group] = np.sum(members, axis=0) / len(members)
    return means


def nearest_centroids(centroids, query, count):
    """[(group, cosine)] of the `count` centroids nearest the query's by cosine, largest first,
    ties by group index; groups without a centroid (NaN) take no part."""
    centroids = np.asarray(centroids, dtype=np.float64)
    if np.isnan(centroids[query]).any():
        return []
    a = centroids[query]
    ranked = sorted((-float(a @ b / math.sqrt(a @ a) / math.sqrt(b @ b)), group)
                    for group, b in enumerate(centroids) if group != query and not np.isnan(b).any())
    return [(group, -negative) for negative, group in ranked[:count]]


def pseudo_label_tables(logits, labels, num_classes, thresholds, ks):
    """Loop by loop, from the softmax of the logits: (one row per confidence threshold τ: what
    FixMatch keeps, the images whose top probability is ≥ τ; one row per k: the k most confident
    images predicted as each class, ties by image index; {τ: (kept per class, kept and correct
    per class)})."""
    probabilities = [[math.exp(value) for value in row] for row in np.asarray(logits, dtype=np.float64)]
    probabilities = [[value / sum(row) for value in row] for row in probabilities]
    confidence = [max(row) for row in probabilities]
    predicted = [row.index(max(row)) for row in probabilities]
    labels = [int(label) for label in labels]
    threshold_rows, per_class = [], {}
    for threshold in thresholds:
        kept = [i for i in range(len(labels)) if confidence[i] >= threshold]
        counts = [sum(1 for i in kept if predicted[i] == c) for c in range(num_classes)]
        correct = [sum(1 for i in kept if predicted[i] == c == labels[i]) for c in range(num_classes)]
        shares = [count / len(kept) for count in counts if count]
        threshold_rows.append({
            "threshold": threshold, "kept": len(kept), "kept_share": len(kept) / len(labels),
            "accuracy": sum(correct) / len(kept) if kept else None,
            "classes_without_kept": counts.count(0),
            "kl_from_uniform": sum(q * math.log(q * num_classes) for q in shares) if kept else None,
            "max_min_ratio": max(counts) / min(counts) if min(counts) > 0 else None})
        per_class[threshold] = counts, correct
    top_k_rows = []
    for k in ks:
        selected, short = [], 0
        for c in range(num_classes):
            members = sorted((i for i in range(len(labels)) if predicted[i] == c),
                             key=lambda i: (-confidence[i], i))
            selected += members[:k]
            short += len(members) < k
        top_k_rows.append({"k": k, "selected": len(selected), "selected_share": len(selected) / len(labels),
                           "accuracy": sum(predicted[i] == labels[i] for i in selected) / len(selected),
                           "classes_below_k": short})
    return threshold_rows, top_k_rows, per_class


def assert_rows_equal(rows, expected, relative=1e-9):
    """Rows of a JSON table equal the oracle's: the same keys, numbers to `relative`, None as None."""
    assert len(rows) == len(expected)
    for row, expected_row in zip(rows, expected):
        assert row.keys() == expected_row.keys()
        for key, value in expected_row.items():
            assert row[key] == (value if value is None else pytest.approx(value, rel=relative)), (key, row)


def open_clip_zero_shot_logits(model, tokenizer, class_names, templates, images):
    """Zero-shot CLIP as open_clip's documentation computes it: each class's prompts (the
    templates with "{c}" filled) encoded, normalised, averaged and renormalised; unit image
    features; logit_scale.exp() x their cosines. `images`: a preprocessed [B, 3, H, W] batch."""
    import torch
    with torch.no_grad():
        classes = []
        for name in class_names:
            prompts = model.encode_text(tokenizer([template.replace("{c}", name) for template in templates]))
            mean = (prompts / prompts.norm(dim=-1, keepdim=True)).mean(dim=0)
            classes.append(mean / mean.norm())
        features = model.encode_image(images)
        features = features / features.norm(dim=-1, keepdim=True)
        return (model.logit_scale.exp() * features @ torch.stack(classes).T).numpy()


def preprocessed_images(preprocess, paths):
    """The image files through open_clip's (or torchvision's) transform, as RGB, in one batch."""
    import torch
    from PIL import Image
    return torch.stack([preprocess(Image.open(path).convert("RGB")) for path in paths])
