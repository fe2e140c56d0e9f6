"""metrics.py against hand-computed values, scikit-learn and direct computations."""
import numpy as np
import pytest
from sklearn import metrics as sk

import metrics
from oracles import group_means, nearest_centroids


def one_hot_logits(predictions, num_classes):
    return np.eye(num_classes)[predictions] + 0.01


@pytest.fixture
def small_case():
    # 4 classes: class 3 is never predicted, class 2 has no images, class 0 is over-predicted.
    labels = np.array([0, 0, 1, 1, 1, 3, 3])
    predicted = np.array([0, 0, 0, 1, 2, 0, 1])
    return labels, predicted, 4


def test_counts_and_confusion_by_hand(small_case):
    labels, predicted, k = small_case
    confusion = metrics.confusion_matrix(labels, predicted, k)
    assert confusion.tolist() == [[2, 0, 0, 0], [1, 1, 1, 0], [0, 0, 0, 0], [1, 1, 0, 0]]
    assert metrics.class_counts(predicted, k).tolist() == [4, 2, 1, 0]
    np.testing.assert_array_equal(confusion, sk.confusion_matrix(labels, predicted, labels=range(k)))


def test_precision_recall_undefined_is_nan_not_zero(small_case):
    labels, predicted, k = small_case
    precision, recall = metrics.precision_recall(metrics.confusion_matrix(labels, predicted, k))
    np.testing.assert_allclose(precision[:3], [2 / 4, 1 / 2, 0 / 1])
    assert np.isnan(precision[3])  # nobody predicted class 3
    np.testing.assert_allclose(recall[[0, 1, 3]], [1.0, 1 / 3, 0.0])
    assert np.isnan(recall[2])  # class 2 has no images
    defined = [0, 1, 2]
    np.testing.assert_allclose(precision[defined], sk.precision_score(
        labels, predicted, labels=defined, average=None, zero_division=0))


def test_balanced_accuracy_matches_sklearn(small_case):
    labels, predicted, k = small_case
    _, recall = metrics.precision_recall(metrics.confusion_matrix(labels, predicted, k))
    with pytest.warns(UserWarning):  # sklearn warns that class 2 is predicted but has no images
        expected = sk.balanced_accuracy_score(labels, predicted)
    assert metrics.balanced_accuracy(recall) == pytest.approx(expected)


def test_accuracy_matches_sklearn(small_case):
    labels, predicted, k = small_case
    assert metrics.accuracy(metrics.confusion_matrix(labels, predicted, k)) == pytest.approx(
        sk.accuracy_score(labels, predicted))
    assert metrics.accuracy(np.zeros((3, 3), dtype=int)) == 0.0


def test_top_k_accuracy_matches_sklearn():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(50, 8))
    labels = rng.integers(0, 8, size=50)
    for k in (1, 3, 5):
        assert metrics.top_k_accuracy(logits, labels, k) == pytest.approx(
            sk.top_k_accuracy_score(labels, logits, k=k, labels=range(8)))
    assert metrics.top_k_accuracy(logits[:, :3], labels % 3, 5) == 1.0  # k capped at K


def test_prediction_order_descending_ties_by_index():
    counts = np.array([3, 5, 0, 5, 3, 0])
    assert metrics.prediction_order(counts).tolist() == [1, 3, 0, 4, 2, 5]


def test_centroids_are_group_means_with_nan_for_empty_groups():
    logits = np.array([[1.0, 0, 0], [3.0, 0, 2], [0, 1.0, 0]])
    centroids = metrics.class_centroids(logits, np.array([0, 0, 1]), 3)
    np.testing.assert_allclose(centroids[:2], [[2.0, 0, 1.0], [0, 1.0, 0]])
    assert np.isnan(centroids[2]).all()


def test_nearest_centroids_against_direct_computation():
    rng = np.random.default_rng(1)
    num_classes = 15
    logits = rng.normal(size=(200, num_classes))
    groups = rng.integers(0, num_classes - 2, size=200)  # the last two classes stay empty
    centroids = metrics.class_centroids(logits, groups, num_classes)
    np.testing.assert_allclose(centroids, group_means(logits, groups, num_classes), atol=1e-12)
    for query in range(num_classes):
        neighbours, cosines = metrics.nearest_centroids(centroids, query, 10)
        expected = nearest_centroids(centroids, query, 10)
        assert neighbours.tolist() == [other for other, _ in expected]
        np.testing.assert_allclose(cosines, [cosine for _, cosine in expected])
        assert set(neighbours.tolist()).isdisjoint({query, num_classes - 2, num_classes - 1})


def test_nearest_centroids_ties_by_class_index_and_empty_query():
    centroids = np.array([[1.0, 0], [2.0, 0], [np.nan, np.nan], [1.0, 0], [0, 1.0], [3.0, 0]])
    neighbours, cosines = metrics.nearest_centroids(centroids, 3, 10)
    assert neighbours.tolist() == [0, 1, 5, 4]
    np.testing.assert_allclose(cosines, [1, 1, 1, 0], atol=1e-12)
    neighbours, cosines = metrics.nearest_centroids(centroids, 2, 10)
    assert neighbours.size == 0 and cosines.size == 0


def test_predicted_labels_are_argmax():
    assert metrics.predicted_labels(one_hot_logits(np.array([2, 0, 1]), 3)).tolist() == [2, 0, 1]


def test_centered_centroids_equal_centroids_of_centered_logits():
    rng = np.random.default_rng(2)
    logits = 25 + rng.normal(size=(120, 9))  # CLIP-like: a large offset shared by every logit
    groups = rng.integers(0, 8, size=120)  # class 8 stays empty
    centered = metrics.centered_centroids(metrics.class_centroids(logits, groups, 9))
    shifted = logits - logits.mean(axis=1, keepdims=True)
    for group in range(8):
        np.testing.assert_allclose(centered[group], shifted[groups == group].mean(axis=0), atol=1e-12)
    assert np.isnan(centered[8]).all()


def test_largest_confusions_against_direct_enumeration():
    rng = np.random.default_rng(3)
    confusion = rng.integers(0, 4, size=(12, 12))  # many ties and zeros
    cells = sorted((-confusion[t, p], t, p) for t in range(12) for p in range(12)
                   if t != p and confusion[t, p] > 0)

    def expected(selected, count):
        return [(t, p, -negative) for negative, t, p in cells if selected(t, p)][:count]

    def ours(count, **only):
        return list(zip(*(part.tolist() for part in metrics.largest_confusions(confusion, count, **only))))

    assert ours(20) == expected(lambda t, p: True, 20)
    assert ours(5, true_class=4) == expected(lambda t, p: t == 4, 5)
    assert ours(5, predicted_class=7) == expected(lambda t, p: p == 7, 5)
    assert ours(500) == expected(lambda t, p: True, 500)  # every non-zero off-diagonal cell
    assert ours(5, true_class=2, predicted_class=2) == []  # the diagonal is never a confusion


@pytest.mark.parametrize("counts", [[5, 5, 5, 5], [9, 0, 3, 1], [0, 0, 7], [1, 2, 3, 4, 50]])
def test_gini_is_the_mean_absolute_difference_over_twice_the_mean(counts):
    counts = np.asarray(counts, dtype=np.float64)
    pairwise = np.abs(counts[:, None] - counts[None, :]).mean()
    assert metrics.gini(counts) == pytest.approx(pairwise / (2 * counts.mean()))


def test_gini_bounds_and_undefined():
    assert metrics.gini([4, 4, 4]) == 0.0
    assert metrics.gini([0, 0, 0, 8]) == pytest.approx(3 / 4)  # (K-1)/K: one class takes all
    assert np.isnan(metrics.gini([])) and np.isnan(metrics.gini([0, 0]))


@pytest.mark.parametrize("counts, reference", [([3, 1, 0, 6], [2, 2, 3, 3]), ([5, 5], [1, 9]),
                                               ([4, 4, 4], [7, 7, 7])])
def test_kl_divergence_matches_scipy(counts, reference):
    from scipy.stats import entropy
    assert metrics.kl_divergence(counts, reference) == pytest.approx(entropy(counts, reference))


def test_kl_divergence_to_equal_counts_is_kl_from_uniform_and_undefined_cases():
    assert metrics.kl_divergence([9, 1, 0, 2], [3, 3, 3, 3]) == pytest.approx(
        metrics.kl_from_uniform([9, 1, 0, 2]))
    assert metrics.kl_divergence([1, 2, 1], [0, 4, 4]) == np.inf  # predicted where none belong
    assert np.isnan(metrics.kl_divergence([0, 0], [1, 1])) and np.isnan(metrics.kl_divergence([1, 1], [0, 0]))
    with pytest.raises(ValueError):
        metrics.kl_divergence([1, 2], [1, 2, 3])
