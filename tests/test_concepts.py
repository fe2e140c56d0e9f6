"""concepts.py on synthetic CLIP-like features with planted concept-mismatched classes, and the
margin, tendency and Figure 4 test on hand-computed cases."""
from dataclasses import dataclass

import numpy as np
import pytest

from runs import cache
from analysis import concepts
import metrics
from analysis.pseudo_labels import top_probability

LOGIT_SCALE = 100.0


@dataclass
class PlantedRun:
    image_features: np.ndarray  # float32 [N, D], unit rows
    text_features: np.ndarray  # float32 [K, D], unit rows
    labels: np.ndarray
    cluster_directions: np.ndarray  # [K, D]: where each class's images are
    planted: np.ndarray  # classes whose text embedding was moved away from their images
    predicted: np.ndarray
    confidence: np.ndarray


def planted_run(num_classes=30, per_class=40, dim=64, planted=(4, 17, 25), seed=0):
    """Unit image embeddings around one random direction per class; each class's text embedding
    near its direction, except the planted classes', which point elsewhere (a random direction)."""
    rng = np.random.default_rng(seed)
    directions = concepts.unit_rows(rng.normal(size=(num_classes, dim)))
    labels = np.repeat(np.arange(num_classes), per_class)
    noise = rng.normal(size=(len(labels), dim)) * 0.5 / np.sqrt(dim)
    images = concepts.unit_rows(directions[labels] + noise).astype(np.float32)
    texts = concepts.unit_rows(directions + rng.normal(size=directions.shape) * 0.3 / np.sqrt(dim))
    texts[list(planted)] = concepts.unit_rows(rng.normal(size=(len(planted), dim)))
    texts = texts.astype(np.float32)
    predicted, confidence = concepts.pseudo_labels_and_confidence(LOGIT_SCALE * images @ texts.T)
    return PlantedRun(images, texts, labels, directions, np.array(planted), predicted, confidence)


@pytest.fixture(scope="module")
def run():
    return planted_run()


@pytest.fixture(scope="module")
def detection(run):
    return concepts.detect_mismatched_classes(run.image_features, run.text_features,
                                              run.predicted, run.confidence, random_state=0)


def read_only_memory_map(array, folder):
    """`array` as a cache holds it: a read-only memory map."""
    np.save(folder / "features.npy", array)
    return np.load(folder / "features.npy", mmap_mode="r")


def recall(run, logits):
    _, class_recall = metrics.precision_recall(
        metrics.confusion_matrix(run.labels, metrics.predicted_labels(logits), len(run.text_features)))
    return class_recall


def test_detection_finds_the_planted_classes_and_no_others(run, detection):
    assert sorted(detection.mismatched) == sorted(run.planted)
    assert sorted(detection.remaining_classes) == sorted(run.planted)  # a tenth of 30 classes
    assert sorted(np.concatenate([detection.matched_order, detection.remaining_classes])) == list(range(30))
    assert detection.num_images_used == len(run.labels) and not detection.sampled
    # What is left is mostly the planted classes' images, whose clusters Appendix B.3 matches.
    assert np.isin(run.labels[detection.remaining_images], run.planted).mean() > 0.9
    assert detection.remaining_centres.shape == (3, 64)


def test_the_same_seed_gives_the_same_detection(run, detection):
    again = concepts.detect_mismatched_classes(run.image_features, run.text_features,
                                               run.predicted, run.confidence, random_state=0)
    for field in ("mismatched", "remaining_classes", "matched_order", "remaining_images",
                  "remaining_centres"):
        np.testing.assert_array_equal(getattr(again, field), getattr(detection, field))


def test_fresh_clusterings_and_another_seed_find_them_too(run):
    fresh = concepts.detect_mismatched_classes(run.image_features, run.text_features, run.predicted,
                                               run.confidence, warm_start=False, n_init=1,
                                               random_state=1)
    assert sorted(fresh.mismatched) == sorted(run.planted)


def test_above_the_size_limit_detection_runs_on_a_seeded_sample(run, tmp_path):
    features = read_only_memory_map(run.image_features, tmp_path)
    sampled = concepts.detect_mismatched_classes(features, run.text_features, run.predicted,
                                                 run.confidence, max_images=900)
    assert sampled.sampled and sampled.num_images_used == 900
    assert sorted(sampled.mismatched) == sorted(run.planted)
    assert set(sampled.remaining_images) <= set(range(len(run.labels)))


def test_ties_at_the_cut_of_the_least_predicted_are_left_out():
    np.testing.assert_array_equal(concepts.least_predicted_classes([5, 0, 9, 5, 2], 3), [1, 4])
    np.testing.assert_array_equal(concepts.least_predicted_classes([5, 0, 9, 5, 2], 4), [1, 4, 0, 3])


def test_removal_takes_at_most_m_of_the_cluster_predicted_as_the_class_most_confident_first():
    predicted = np.array([2, 2, 1, 2, 2, 2])
    confidence = np.array([0.5, 0.9, 0.99, 0.7, 0.9, 0.1])
    members = np.array([0, 1, 2, 3, 4])  # the matched cluster (row 5 is in another)
    np.testing.assert_array_equal(concepts.images_to_remove(members, predicted, confidence, 2, 3), [1, 4, 3])
    np.testing.assert_array_equal(concepts.images_to_remove(members, predicted, confidence, 2, 9), [1, 4, 3, 0])
    assert len(concepts.images_to_remove(members, predicted, confidence, 0, 9)) == 0


def test_the_concept_gap_ranks_the_planted_classes_lowest(run):
    gap = concepts.concept_gap(run.text_features, concepts.visual_prototypes(run.image_features, run.labels, 30))
    assert sorted(np.argsort(gap.cosine)[:3]) == sorted(run.planted)
    assert not gap.own_text_nearest[run.planted].any()
    assert gap.own_text_nearest[np.setdiff1d(np.arange(30), run.planted)].all()
    assert not np.isin(gap.nearest_text[run.planted], run.planted).any()


def test_an_empty_group_has_no_prototype_and_no_gap():
    features = np.eye(3, dtype=np.float32)
    prototypes = concepts.visual_prototypes(features, [0, 0, 2], 3)
    assert np.isnan(prototypes[1]).all()
    np.testing.assert_allclose(prototypes[0], [np.sqrt(0.5), np.sqrt(0.5), 0])
    gap = concepts.concept_gap(features, prototypes)
    np.testing.assert_allclose(gap.cosine, [np.sqrt(0.5), np.nan, 1.0])
    np.testing.assert_array_equal(gap.nearest_text, [0, -1, 2])
    np.testing.assert_array_equal(gap.own_text_nearest, [True, False, True])


def test_block_by_block_equals_the_whole_array(run, monkeypatch, tmp_path):
    features = read_only_memory_map(run.image_features, tmp_path)
    logits = LOGIT_SCALE * run.image_features @ run.text_features.T
    monkeypatch.setattr(cache, "BLOCK_ELEMENTS", 7 * 64)  # 7 rows a block
    blocks = list(concepts.logit_blocks(features, run.text_features, LOGIT_SCALE))
    assert len(blocks) > 100 and all(block.dtype == np.float32 for block in blocks)
    np.testing.assert_allclose(np.concatenate(blocks), logits, rtol=1e-5, atol=1e-4)
    predicted, confidence = concepts.pseudo_labels_and_confidence(logits)
    np.testing.assert_array_equal(predicted, metrics.predicted_labels(logits))
    np.testing.assert_allclose(confidence, top_probability(logits))
    whole = concepts.unit_rows(metrics.class_centroids(run.image_features, run.predicted, 30))
    np.testing.assert_allclose(concepts.visual_prototypes(features, run.predicted, 30), whole,
                               atol=1e-12)


def test_concept_aligned_candidates_raise_the_recall_of_the_planted_classes(run, detection):
    rng = np.random.default_rng(7)
    aligned = run.text_features.copy()
    for planted in run.planted:
        # Two wrong alternative names and one whose embedding points at the class's images.
        candidates = concepts.unit_rows(np.vstack([rng.normal(size=(2, 64)),
                                                   run.cluster_directions[planted]]))
        chosen = concepts.best_candidate(candidates, detection.remaining_centres)
        assert chosen == 2
        aligned[planted] = candidates[chosen]
    before = recall(run, LOGIT_SCALE * run.image_features @ run.text_features.T)
    after = recall(run, np.concatenate(list(concepts.logit_blocks(run.image_features, aligned, LOGIT_SCALE))))
    assert before[run.planted].max() < 0.2 and after[run.planted].min() > 0.9


def test_margin_and_tendency_on_a_hand_computed_case():
    counts = concepts.confident_counts([0, 0, 1, 2, 0, 1], [0.9, 0.85, 0.9, 0.1, 0.99, 0.84], 3)
    np.testing.assert_array_equal(counts, [3, 1, 0])
    tendency = concepts.prediction_tendency([10, 5, 0])
    np.testing.assert_allclose(tendency, [1.0, 0.5, 0.0])
    degree = concepts.imbalance_degree(tendency)
    assert degree == 12.0
    similarity = np.array([[1.0, 0.5, 0.2], [0.5, 1.0, 0.4], [0.2, 0.4, 1.0]])
    margin = concepts.calibrated_margin(similarity, tendency, degree)
    # (1 - r_k) / (1 + r_k) · D · S[k, j]: row 0 (r = 1) gets none; row 1 scale 4, row 2 scale 12.
    np.testing.assert_allclose(margin, [[0, 0, 0], [2.0, 0, 1.6], [2.4, 4.8, 0]])
    rows, columns = concepts.largest_margin_pairs(margin, count=3)
    assert list(zip(rows, columns)) == [(2, 1), (2, 0), (1, 0)]
    # (1, 2) is the reverse of margin pair (2, 1): it is not counted.
    assert concepts.coinciding_pairs((rows, columns), ([2, 0, 1, 1], [1, 2, 0, 2])) == 2
    np.testing.assert_array_equal(concepts.prediction_tendency([0, 0]), [0, 0])


def test_class_similarity_is_the_larger_of_text_and_visual_cosines():
    texts = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    prototypes = np.array([[1.0, 0.0], [1.0, 0.0], [np.nan, np.nan]])
    similarity = concepts.class_similarity(texts, prototypes)
    root_half = np.sqrt(0.5)
    np.testing.assert_allclose(similarity, [[1, 1, root_half], [1, 1, root_half],
                                            [root_half, root_half, 1]])
    assert np.isnan(concepts.class_similarity(texts, prototypes, "visual")[2]).all()
    assert concepts.class_similarity(texts, prototypes, "text")[0, 1] == 0
    with pytest.raises(ValueError, match="kind"):
        concepts.class_similarity(texts, prototypes, "mean")


def test_neighbour_cosine_means_exclude_self_and_undefined_centroids():
    cosine = np.array([[1.0, 0.9, 0.1, np.nan],
                       [0.9, 1.0, 0.3, np.nan],
                       [0.1, 0.3, 1.0, np.nan],
                       [np.nan, np.nan, np.nan, np.nan]])
    np.testing.assert_allclose(concepts.neighbour_cosine_means(cosine, neighbours=1), [0.9, 0.9, 0.3, np.nan])
    np.testing.assert_allclose(concepts.neighbour_cosine_means(cosine, neighbours=10), [0.5, 0.6, 0.2, np.nan])


def constant_row_cosines(row_values, undefined=()):
    """[K, K] centroid cosines whose off-diagonal row k is row_values[k]; classes in `undefined`
    have no centroid (NaN row and column)."""
    cosine = np.repeat(np.asarray(row_values, dtype=np.float64)[:, None], len(row_values), axis=1)
    np.fill_diagonal(cosine, 1.0)
    cosine[list(undefined)] = np.nan
    cosine[:, list(undefined)] = np.nan
    return cosine


def test_figure4_claim_supported_when_rarer_classes_have_closer_neighbours():
    counts = np.arange(12) * 10
    claim = concepts.figure4_claim(counts, constant_row_cosines(0.9 - 0.01 * np.arange(12), undefined=[5]))
    assert claim.supported and claim.rho == pytest.approx(-1.0) and claim.p_value < 0.05
    assert claim.num_classes == 11
    assert " is supported on this run: Spearman rho = -1.000" in claim.sentence
    assert "n = 11 classes" in claim.sentence


def test_figure4_claim_not_supported_when_the_correlation_is_positive_or_undefined():
    counts = np.arange(12) * 10
    claim = concepts.figure4_claim(counts, constant_row_cosines(0.8 + 0.01 * np.arange(12)))
    assert not claim.supported and claim.rho == pytest.approx(1.0)
    assert " is not supported on this run: Spearman rho = 1.000" in claim.sentence
    flat = concepts.figure4_claim(counts, constant_row_cosines(np.full(12, 0.5)))
    assert not flat.supported and np.isnan(flat.rho) and "rho = nan" in flat.sentence


def test_spearman_equals_scipys_with_ties():
    from scipy.stats import spearmanr
    rng = np.random.default_rng(3)
    x = rng.integers(0, 6, 40).astype(float)  # many ties
    y = rng.standard_normal(40) - 0.2 * x
    expected = spearmanr(x, y)
    assert concepts.spearman(x, y) == pytest.approx((expected.statistic, expected.pvalue), rel=1e-12)
