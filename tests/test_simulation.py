"""The demo's simulated runs: shaped like real CLIP RN50 and DebiasPL runs on ImageNet100, seeded,
numpy only, and SIMULATED in every title and header drawn from them."""
import json

import numpy as np
import pytest

from analysis import run_analysis, terminal_text
from sources import classes
from analysis import concepts
import metrics
from runs import descriptors
from demo import simulation
from conftest import synthetic_predictions


@pytest.fixture(scope="module")
def simulated():
    return simulation.simulated_predictions(seed=0)


def counts_and_accuracy(predictions):
    predicted = predictions.logits.argmax(axis=1)
    return (np.bincount(predicted, minlength=len(predictions.wnids)),
            float(np.mean(predicted == predictions.labels)))


def test_imagenet100_sized_and_marked_simulated(simulated):
    table = classes.read_imagenet100_table()
    for model, predictions in simulated.items():
        assert predictions.meta["model"] == model and predictions.meta["simulated"] is True
        assert predictions.wnids.tolist() == [row["wnid"] for row in table]
        assert predictions.names.tolist() == [row["clip_name"] for row in table]
        assert predictions.logits.dtype == np.float32 and predictions.logits.shape == (5000, 100)
        assert np.bincount(predictions.labels).tolist() == [50] * 100
        assert len(set(predictions.paths.tolist())) == 5000


def test_clip_like_logits_and_embeddings():
    rng = np.random.default_rng(0)
    indices = np.array([int(row["imagenet1k_index"]) for row in classes.read_imagenet100_table()])
    text, hub = simulation.text_embeddings(rng, indices)
    assert np.allclose(np.linalg.norm(text, axis=1), 1) and np.isclose(np.linalg.norm(hub), 1)
    pairwise = (text @ text.T)[~np.eye(len(text), dtype=bool)]
    assert abs(pairwise.mean() - 0.75) < 0.02  # CLIP's class text embeddings: mean cosine ≈ 0.75
    labels = np.arange(len(text))
    noise = rng.standard_normal((len(text), simulation.DIMENSION)) / np.sqrt(simulation.DIMENSION)
    logits = simulation.simulated_logits(text, hub, labels, np.full(len(text), 0.3), 0.05, noise)
    images = 0.3 * text[labels] + noise + 0.05 * hub
    expected = 100 * (images / np.linalg.norm(images, axis=1, keepdims=True)) @ text.T
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-4)  # 100 x cosine


def test_imbalance_shaped_like_the_real_runs(simulated):
    """The public homework numbers the simulation follows: clip 78.88% top-1 with counts from 88
    down to 12, DebiasPL 86.96% with 80 down to 27; DebiasPL's biases follow clip's. clip's three
    planted mismatched classes get no prediction: the least predicted of the others is compared."""
    clip_counts, clip_accuracy = counts_and_accuracy(simulated["clip"])
    debiaspl_counts, debiaspl_accuracy = counts_and_accuracy(simulated["debiaspl"])
    matched = ~np.isin(simulated["clip"].wnids, simulation.PLANTED_MISMATCHES)
    assert 0.74 < clip_accuracy < 0.84 and 5 < clip_counts.max() / clip_counts[matched].min() < 9
    assert 0.83 < debiaspl_accuracy < 0.91 and 2 < debiaspl_counts.max() / debiaspl_counts.min() < 4
    assert np.corrcoef(clip_counts[matched], debiaspl_counts[matched])[0, 1] > 0.5
    mean_logit = float(simulated["clip"].logits.mean())
    assert 15 < mean_logit < 35  # 100 x cosines of about 0.2 to 0.3, as CLIP's
    # The shared offset crowds the literal centroid cosines near 1, not the centered ones.
    confusion = metrics.confusion_matrix(simulated["clip"].labels, simulated["clip"].logits.argmax(1), 100)
    centroids = metrics.class_centroids(simulated["clip"].logits, simulated["clip"].labels, 100)
    top = clip_counts.argmax()
    assert confusion[:, top].sum() == clip_counts[top]
    assert metrics.nearest_centroids(centroids, top)[1].min() > 0.99
    assert np.median(metrics.nearest_centroids(metrics.centered_centroids(centroids), top)[1]) < 0.95


def test_planted_mismatches_have_the_widest_concept_gaps(simulated):
    """The planted classes' text embeddings miss their images: the three lowest text-prototype
    cosines, no image predicted as them, and other classes' texts nearest their images."""
    clip = simulated["clip"]
    planted = np.flatnonzero(np.isin(clip.wnids, simulation.PLANTED_MISMATCHES))
    assert len(planted) == 3
    gap = concepts.concept_gap(clip.text_features,
                               concepts.visual_prototypes(clip.image_features, clip.labels, 100))
    assert sorted(np.argsort(gap.cosine)[:3]) == planted.tolist()
    assert not gap.own_text_nearest[planted].any() and gap.own_text_nearest.sum() >= 90
    assert counts_and_accuracy(clip)[0][planted].tolist() == [0, 0, 0]
    # DebiasPL's classifier has no mismatched concept; logits stay 100 x the features' cosines.
    assert counts_and_accuracy(simulated["debiaspl"])[0][planted].min() > 10
    np.testing.assert_allclose(clip.logits, 100 * clip.image_features @ clip.text_features.T,
                               rtol=1e-5, atol=1e-4)


def test_seeded(simulated):
    again = simulation.simulated_predictions(seed=0)
    other = simulation.simulated_predictions(seed=1)
    for model in simulated:
        assert np.array_equal(again[model].logits, simulated[model].logits)
        assert not np.array_equal(other[model].logits, simulated[model].logits)


def test_simulated_meta_titles_every_figure_and_header(tmp_path, monkeypatch):
    drawn = []
    monkeypatch.setattr(run_analysis, "write_figures",
                        lambda figures, in_workers: drawn.extend(figures.values()))
    for simulated_meta in (True, False):
        predictions = synthetic_predictions("clip", 0)
        if simulated_meta:
            predictions.meta["simulated"] = True
        summary, centroids, selection = run_analysis.analyze(predictions, tmp_path / "clip", tmp_path)
        titles = [ax.get_title(loc) for figure in drawn for ax in figure.axes
                  for loc in ("left", "center") if ax.get_title(loc)]
        titles += [figure.get_suptitle() for figure in drawn if figure.get_suptitle()]
        assert len(titles) == 4 and all(("SIMULATED" in title) == simulated_meta for title in titles)
        header = terminal_text.format_report(summary, centroids, selection).split("\n")[0]
        assert ("SIMULATED" in header) == simulated_meta
        drawn.clear()
    derived = {"model": "clip-la", "clip": {"model": "clip", "simulated": True}}  # as clip-la's meta
    assert descriptors.model_title(derived).startswith("SIMULATED")
    assert not descriptors.is_simulated({"model": "clip-la", "clip": {"model": "clip"}})


def test_demo_runs_say_simulated(simulated_demo):
    """The demo's second half: every run's meta and terminal header, and clip-la's too."""
    for model in ("clip", "debiaspl", "clip-la", "clip-pm"):
        saved, centroids, selection = (json.loads((simulated_demo / model / name).read_text()) for name in
                                       ("metrics.json", "centroids.json", "pseudo_labels.json"))
        assert descriptors.is_simulated(saved["settings"])
        assert terminal_text.format_report(saved, centroids, selection).startswith(f"== SIMULATED {model}:")
