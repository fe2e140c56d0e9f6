"""Pseudo-label selection diagnostics (pseudo_labels.json, pseudo_labels.png) against the
loop-based oracle (oracles.pseudo_label_tables) on a crafted cache. No torch."""
import json
import math

import numpy as np
import pytest
from matplotlib.figure import Figure

from runs import cache
import plotting
from analysis import pseudo_labels
import starter
from conftest import SUBSET_WNIDS
from oracles import assert_rows_equal, pseudo_label_tables

# The issue's grids: FixMatch-style thresholds and UPL/FPL-style per-class counts.
SPEC_THRESHOLDS = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99]
SPEC_KS = [1, 2, 4, 8, 16, 32]
# Top probabilities: kept and dropped around every threshold, never within 0.005 of one.
TOP_PROBABILITIES = [0.33, 0.47, 0.55, 0.66, 0.74, 0.85, 0.93, 0.97, 0.995]


def crafted_predictions(seed=0, num_images=120):
    """Six classes: predictions skewed towards class 0, class 5 predicted once and unconfidently,
    known top probabilities, and two identical rows (a tie) with different labels."""
    rng = np.random.default_rng(seed)
    num_classes = len(SUBSET_WNIDS)
    predicted = rng.choice(5, size=num_images, p=[0.4, 0.25, 0.15, 0.12, 0.08])
    top = rng.choice(TOP_PROBABILITIES, size=num_images) + rng.uniform(-0.004, 0.004, num_images)
    predicted[2], top[2] = 5, 0.33
    rest = rng.uniform(0.9, 1.1, size=(num_images, num_classes))
    rest[np.arange(num_images), predicted] = 0
    probabilities = rest / rest.sum(axis=1, keepdims=True) * (1 - top)[:, None]
    probabilities[np.arange(num_images), predicted] = top
    labels = np.where(rng.random(num_images) < 0.7, predicted, rng.integers(0, num_classes, num_images))
    probabilities[1] = probabilities[0]  # a tie within class predicted[0] ...
    labels[1] = (labels[0] + 1) % num_classes  # ... that only one of the two gets right
    wnids = np.array(SUBSET_WNIDS)
    return cache.Predictions(
        logits=np.log(probabilities).astype(np.float32), labels=labels.astype(np.int64),
        paths=np.array([f"{wnids[label]}/img{i}.JPEG" for i, label in enumerate(labels)]),
        wnids=wnids, names=np.array([f"class {wnid}" for wnid in wnids]), meta={"model": "clip"})


def test_the_grids_are_the_issues():
    assert list(pseudo_labels.THRESHOLDS) == SPEC_THRESHOLDS
    assert list(pseudo_labels.TOP_KS) == SPEC_KS
    assert pseudo_labels.TRAINING_THRESHOLD == 0.95


def test_cli_pseudo_labels_json_matches_a_direct_computation(tmp_path, capsys):
    predictions = crafted_predictions()
    cache.save_predictions(tmp_path / "clip" / "predictions.npz", predictions)
    assert starter.main(["--model", "clip", "--from-cache", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    selection = json.loads((tmp_path / "clip" / "pseudo_labels.json").read_text())
    assert (tmp_path / "clip" / "pseudo_labels.png").stat().st_size > 0
    thresholds, top_k, per_class = pseudo_label_tables(predictions.logits, predictions.labels, 6,
                                                       SPEC_THRESHOLDS, SPEC_KS)
    kept, correct = per_class[0.95]
    assert_rows_equal(selection["confidence_threshold"]["rows"], thresholds)
    assert_rows_equal(selection["class_balanced_top_k"]["rows"], top_k)
    # The crafted cache reaches every case: rows with and without a class that keeps no image.
    assert thresholds[0]["max_min_ratio"] is not None and thresholds[-1]["kept"] > 0
    assert thresholds[-1]["max_min_ratio"] is None and thresholds[-1]["classes_without_kept"] >= 1
    assert top_k[0]["selected"] == 6 and top_k[-1]["classes_below_k"] == 5  # class 0 has > 32
    # Per class at 0.95, in the run's figure order.
    order = json.loads((tmp_path / "clip" / "metrics.json").read_text())["order"]
    per_class = selection["kept_per_class"]
    assert per_class["threshold"] == 0.95
    assert [entry["wnid"] for entry in per_class["classes"]] == order
    index = [SUBSET_WNIDS.index(wnid) for wnid in order]
    assert [entry["kept"] for entry in per_class["classes"]] == [kept[i] for i in index]
    assert [entry["kept_correct"] for entry in per_class["classes"]] == [correct[i] for i in index]
    at_training = next(row for row in thresholds if row["threshold"] == 0.95)
    assert (f"pseudo-labels at confidence ≥ 0.95: {at_training['kept_share']:.1%} of images kept "
            f"({at_training['kept']} of 120), {at_training['accuracy']:.1%} of them correct") in printed
    assert pseudo_labels.at_threshold(selection) == selection["confidence_threshold"]["rows"][-2]
    assert "renormalised over the dataset's classes" in selection["probability"]


def test_ties_in_probability_are_broken_by_image_index():
    predictions = crafted_predictions()
    confidence = pseudo_labels.top_probability(predictions.logits)
    predicted = predictions.logits.argmax(axis=1)
    ranks = pseudo_labels.class_ranks(confidence, predicted)
    assert confidence[0] == confidence[1] and predicted[0] == predicted[1]
    assert ranks[1] == ranks[0] + 1


def test_nothing_kept_leaves_accuracy_kl_and_ratio_undefined():
    confidence = np.array([0.4, 0.6, 0.5])
    rows = pseudo_labels.threshold_selection(confidence, np.array([0, 1, 1]), np.array([0, 1, 0]),
                                             3, thresholds=(0.6, 0.9))
    assert rows[0] == {"threshold": 0.6, "kept": 1, "kept_share": 1 / 3, "accuracy": 1.0,
                       "classes_without_kept": 2, "kl_from_uniform": pytest.approx(math.log(3)),
                       "max_min_ratio": None}
    assert rows[1] == {"threshold": 0.9, "kept": 0, "kept_share": 0.0, "accuracy": None,
                       "classes_without_kept": 3, "kl_from_uniform": None, "max_min_ratio": None}


def test_every_run_gets_diagnostics_in_clips_order(synthetic_runs):
    clip_order = json.loads((synthetic_runs / "clip" / "metrics.json").read_text())["own_order"]
    for model in ("clip", "debiaspl"):
        selection = json.loads((synthetic_runs / model / "pseudo_labels.json").read_text())
        assert selection["model"] == model
        assert [entry["wnid"] for entry in selection["kept_per_class"]["classes"]] == clip_order
        assert sum(entry["kept"] for entry in selection["kept_per_class"]["classes"]) == \
            pseudo_labels.at_threshold(selection)["kept"]
        assert (synthetic_runs / model / "pseudo_labels.png").is_file()


def test_pseudo_label_figure_uses_the_given_axes():
    figure = Figure()
    axes = figure.subplots(1, 3)
    shares = np.linspace(1, 0, 12)
    drawn = plotting.pseudo_label_figure(SPEC_THRESHOLDS, shares, 1 - shares, SPEC_KS,
                                         np.linspace(0.1, 1, 6), np.linspace(1, 0.5, 6),
                                         [3, 2, 0], [2, 2, 0], ["a", "b", "c"], 0.95, axes=axes)
    assert drawn is figure
    assert len(axes[2].patches) == 6  # kept and kept-and-correct bars of three classes
    assert [label.get_text() for label in axes[2].get_xticklabels()] == ["a", "b", "c"]
