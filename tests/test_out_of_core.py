"""The analysis, clip-la and clip-pm read the logits in row blocks: on a cache small enough to
hold whole, many tiny blocks give what one whole-array computation gives (every JSON number to
1e-9 relative, the cached logits bit for bit), the numbers equal a direct numpy computation on
the whole array (the earlier in-memory code's), and no [N, K]-sized array is ever allocated.
No torch."""
import json
import shutil
import tracemalloc

import numpy as np
import pytest
from sklearn.metrics import top_k_accuracy_score

from analysis import run_analysis
from runs import cache
from debias import logit_adjustment
import starter
from debias import training_free
from debias.settings import DerivedRunSettings, LogitAdjustmentSettings
from runs.kinds import run_kind
from conftest import SUBSET_WNIDS
from oracles import (assert_rows_equal, group_means, mean_softmax, nearest_centroids,
                     pseudo_label_tables, sinkhorn)

NUM_CLASSES = 15
EMPTY_CLASS, UNPREDICTED_CLASS = 14, 13  # no images; nobody predicts it
TINY_BLOCK_ROWS = 41  # 22 blocks of 900 rows, the last one shorter
RELATIVE = 1e-9


def clip_like_predictions(num_images=900, seed=0):
    """Logits with CLIP's large shared offset, a per-class bias (imbalanced predictions), one
    class without images and one that is never predicted."""
    rng = np.random.default_rng(seed)
    labels = np.sort(rng.integers(0, NUM_CLASSES - 1, num_images))  # sorted, as ImageFolder's
    bias = np.linspace(1.5, -1.5, NUM_CLASSES)
    bias[UNPREDICTED_CLASS] = -50
    logits = 25 + 1.5 * rng.standard_normal((num_images, NUM_CLASSES)) + 2.5 * np.eye(NUM_CLASSES)[labels] + bias
    wnids = np.array(SUBSET_WNIDS + [f"n{index:08d}" for index in range(NUM_CLASSES - len(SUBSET_WNIDS))])
    return cache.Predictions(
        logits=logits.astype(np.float32), labels=labels.astype(np.int64),
        paths=np.array([f"{wnids[label]}/img{i}.JPEG" for i, label in enumerate(labels)]),
        wnids=wnids, names=np.array([f"class {wnid}" for wnid in wnids]),
        meta={"model": "clip", "simulated": True})


def run_all(out, monkeypatch, block_rows):
    """clip --from-cache, clip-la (online), clip-pm and clip-la (final) into OUT, with blocks of
    `block_rows` rows; {run/file: content} of every JSON and the logits of every cache."""
    monkeypatch.setattr(run_analysis, "BLOCK_ELEMENTS", block_rows * NUM_CLASSES)
    # Figures show the JSONs' numbers; not rendering them halves the time.
    monkeypatch.setattr(run_analysis, "write_figures", lambda figures, in_workers: None)
    monkeypatch.setattr(training_free, "write_figure", lambda path, figure: None)
    cache.save_predictions(out / "clip" / "predictions.npz", clip_like_predictions())
    outputs = {}
    for label, model, options in (
            ("clip", "clip", ["--from-cache"]),
            ("clip-la-online", "clip-la", ["--la-mode", "online", "--la-threshold", "0.5",
                                           "--batch-size", "16", "--la-lambda", "0.7"]),
            ("clip-pm", "clip-pm", []),
            ("clip-la-final", "clip-la", ["--la-threshold", "0.5"])):
        assert starter.main(["--model", model, "--out", str(out), *options]) == 0
        run_dir = out / model
        for path in sorted(run_dir.glob("*.json")):  # paths under OUT as OUT/...
            outputs[f"{label}/{path.name}"] = json.loads(path.read_text().replace(str(out), "OUT"))
        outputs[f"{label}/predictions.npz"] = np.load(run_dir / "predictions.npz")["logits"]
    return outputs


@pytest.fixture(scope="module")
def whole_and_blocked(tmp_path_factory):
    """The same runs with one block and with TINY_BLOCK_ROWS-row blocks."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        whole = run_all(tmp_path_factory.mktemp("whole"), monkeypatch, 10 ** 6)
        blocked = run_all(tmp_path_factory.mktemp("blocked"), monkeypatch, TINY_BLOCK_ROWS)
    return whole, blocked


def assert_same_json(actual, expected, where=""):
    """Equal structure and values; floats to RELATIVE."""
    if isinstance(expected, dict):
        assert list(actual) == list(expected), where
        for key in expected:
            assert_same_json(actual[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert len(actual) == len(expected), where
        for index, (a, e) in enumerate(zip(actual, expected)):
            assert_same_json(a, e, f"{where}[{index}]")
    elif isinstance(expected, float) and not isinstance(actual, bool):
        assert actual == pytest.approx(expected, rel=RELATIVE, abs=1e-300), where
    else:
        assert actual == expected, where


def test_tiny_blocks_give_every_number_and_cache_of_one_block(whole_and_blocked):
    whole, blocked = whole_and_blocked
    assert list(blocked) == list(whole)
    assert {"clip/metrics.json", "clip-la-final/prior.json", "clip-pm/predictions.npz"} <= set(whole)
    for name, expected in whole.items():
        if name.endswith(".npz"):
            np.testing.assert_array_equal(blocked[name], expected, err_msg=name)
        elif name == "clip-pm/prior.json":
            compare_prior_matches(blocked[name], expected)
        else:
            assert_same_json(without_final_deviation(blocked[name]), without_final_deviation(expected), name)


def without_final_deviation(content):
    """A JSON without clip-pm's final deviation: below the tolerance, it is rounding noise."""
    settings = content.get("settings", {})
    if "prior_matching" not in settings:
        return content
    matching = {key: value for key, value in settings["prior_matching"].items() if key != "final_deviation"}
    return {**content, "settings": {**settings, "prior_matching": matching}}


def compare_prior_matches(actual, expected):
    """Two runs of prior matching reach the fixed point within the tolerance: their biases agree
    to rounding (~1e-13 here) rather than to a relative 1e-9 where they are near 0."""
    for content in (actual, expected):
        assert content["settings"]["converged"] and content["settings"]["final_deviation"] < 1e-9
    for column in ("bias", "prior", "target"):
        np.testing.assert_allclose([entry[column] for entry in actual["classes"]],
                                   [entry[column] for entry in expected["classes"]], rtol=0, atol=1e-12)
    actual_settings, expected_settings = ({key: value for key, value in content["settings"].items()
                                           if key != "final_deviation"} for content in (actual, expected))
    assert actual_settings == expected_settings


def direct_reference(logits, labels):
    """The earlier in-memory analysis on the whole array: per-class counts, accuracies, top-5."""
    logits = np.asarray(logits, dtype=np.float64)
    predicted = logits.argmax(axis=1)
    confusion = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    return predicted, confusion, top_k_accuracy_score(labels, logits, k=5, labels=range(NUM_CLASSES))


def assert_ratio(actual, numerator, denominator):
    """An undefined ratio (0/0 or n/0) is None, as scikit-learn's zero_division leaves it to the
    caller; a defined one equals numerator / denominator."""
    if denominator == 0:
        assert actual is None
    else:
        assert actual == pytest.approx(numerator / denominator, rel=RELATIVE)


def test_metrics_json_equals_a_direct_computation_with_raw_counts(whole_and_blocked):
    summary = whole_and_blocked[1]["clip/metrics.json"]
    predictions = clip_like_predictions()
    _, confusion, top5 = direct_reference(predictions.logits, predictions.labels)
    true_counts, predicted_counts = confusion.sum(axis=1), confusion.sum(axis=0)
    assert [entry["true_count"] for entry in summary["classes"]] == true_counts.tolist()
    assert [entry["predicted_count"] for entry in summary["classes"]] == predicted_counts.tolist()
    assert [entry["true_positives"] for entry in summary["classes"]] == np.diag(confusion).tolist()
    for entry, tp, true, predicted in zip(summary["classes"], np.diag(confusion), true_counts, predicted_counts):
        assert_ratio(entry["precision"], tp, predicted)
        assert_ratio(entry["recall"], tp, true)
    assert summary["classes"][UNPREDICTED_CLASS]["precision"] is None
    assert summary["classes"][EMPTY_CLASS]["recall"] is None
    assert summary["accuracy"] == pytest.approx(np.trace(confusion) / confusion.sum(), rel=RELATIVE)
    assert summary["top5_accuracy"] == pytest.approx(top5, rel=RELATIVE)
    recall = np.diag(confusion)[true_counts > 0] / true_counts[true_counts > 0]
    assert summary["balanced_accuracy"] == pytest.approx(recall.mean(), rel=RELATIVE)


def test_centroid_neighbours_equal_a_direct_computation(whole_and_blocked):
    centroids = whole_and_blocked[1]["clip/centroids.json"]
    predictions = clip_like_predictions()
    logits = predictions.logits.astype(np.float64)
    wnids = predictions.wnids.tolist()
    for grouping, groups in (("by_predicted", logits.argmax(axis=1)), ("by_true", predictions.labels)):
        for kind, values in ((centroids, logits),
                             (centroids["centered"], logits - logits.mean(axis=1, keepdims=True))):
            means = group_means(values, groups, NUM_CLASSES)
            roles = [query["role"] for query in kind[grouping]["queries"]]
            assert len([role for role in roles if not role.startswith("never predicted")]) == 2  # most, least
            for query in kind[grouping]["queries"]:  # an empty group: no centroid, no neighbours
                expected = nearest_centroids(means, wnids.index(query["wnid"]), 10)
                assert [wnids.index(n["wnid"]) for n in query["neighbors"]] == [g for g, _ in expected]
                assert [n["cosine"] for n in query["neighbors"]] == pytest.approx(
                    [cosine for _, cosine in expected], rel=RELATIVE)


def test_pseudo_label_tables_equal_a_direct_computation(whole_and_blocked):
    selection = whole_and_blocked[1]["clip/pseudo_labels.json"]
    predictions = clip_like_predictions()
    rows, top_k_rows = (selection[table]["rows"] for table in ("confidence_threshold", "class_balanced_top_k"))
    thresholds, top_k, _ = pseudo_label_tables(predictions.logits, predictions.labels, NUM_CLASSES,
                                               [row["threshold"] for row in rows], [row["k"] for row in top_k_rows])
    assert_rows_equal(rows, thresholds, RELATIVE)
    assert_rows_equal(top_k_rows, top_k, RELATIVE)


@pytest.mark.parametrize("mode", ["online", "final"])
def test_clip_la_cache_and_sweep_equal_a_direct_computation(whole_and_blocked, mode):
    blocked = whole_and_blocked[1]
    prior = blocked[f"clip-la-{mode}/prior.json"]
    settings = prior["settings"]
    predictions = clip_like_predictions()
    batches = logit_adjustment.shuffled_batches(len(predictions.labels), settings["batch_size"], 0)
    estimate = logit_adjustment.estimate_prior(predictions.logits, batches, settings["momentum"],
                                               settings["threshold"])
    priors = estimate.image_priors if mode == "online" else estimate.prior
    logits = predictions.logits.astype(np.float64)
    expected = (logits - settings["lambda"] * np.log(priors)).astype(np.float32)
    adjusted = blocked[f"clip-la-{mode}/predictions.npz"]
    np.testing.assert_array_equal(adjusted, expected)
    labels = predictions.labels
    for point in prior["lambda_sweep"]:
        predicted = (logits - point["lambda"] * np.log(priors)).argmax(axis=1)
        correct = predicted == labels
        recall = [correct[labels == k].mean() for k in np.unique(labels)]
        assert point["accuracy"] == pytest.approx(correct.mean(), rel=RELATIVE)
        assert point["balanced_accuracy"] == pytest.approx(np.mean(recall), rel=RELATIVE)


def test_clip_pm_reaches_sinkhorns_fixed_point_in_a_few_passes(whole_and_blocked):
    whole, blocked = whole_and_blocked
    logits = clip_like_predictions().logits.astype(np.float64)
    target = np.full(NUM_CLASSES, 1 / NUM_CLASSES)
    expected, _, sinkhorn_iterations = sinkhorn(logits, target)
    for outputs in (whole, blocked):
        prior = outputs["clip-pm/prior.json"]
        settings = prior["settings"]
        bias = np.array([entry["bias"] for entry in prior["classes"]])
        assert settings["converged"] and settings["final_deviation"] < 1e-9
        assert np.abs(mean_softmax(logits - bias) - target).max() < 1e-9
        np.testing.assert_allclose(bias, expected, rtol=0, atol=1e-6)
        assert settings["passes"] <= 20 < sinkhorn_iterations
        adjusted = outputs["clip-pm/predictions.npz"]
        np.testing.assert_array_equal(adjusted, (logits - bias).astype(np.float32))


def confident_logits(seed, num_images=400, num_classes=12, scale=20.0):
    """Very confident, imbalanced softmax: Sinkhorn's steps shrink with the confidence."""
    rng = np.random.default_rng(seed)
    return scale * rng.standard_normal((num_images, num_classes)) + np.linspace(4, -4, num_classes)


@pytest.mark.parametrize("target", [None, "skewed"])
def test_prior_matching_in_blocks_is_exact_where_sinkhorn_is_slow(target):
    logits = confident_logits(0)
    num_classes = logits.shape[1]
    target = (np.full(num_classes, 1 / num_classes) if target is None
              else np.linspace(1, 3, num_classes) / np.linspace(1, 3, num_classes).sum())
    blocks = cache.row_blocks(*logits.shape, 7 * num_classes)
    match = logit_adjustment.match_prior(logits, target, blocks=blocks)
    whole = logit_adjustment.match_prior(logits, target)
    expected, _, sinkhorn_iterations = sinkhorn(logits, target, tolerance=1e-9)
    assert sinkhorn_iterations > 200 and match.passes < 20
    for result in (match, whole):
        assert result.converged
        assert np.abs(mean_softmax(logits - result.bias) - target).max() < 1e-9
        assert result.deviation == pytest.approx(np.abs(mean_softmax(logits - result.bias) - target).max(),
                                                  rel=1e-6, abs=1e-15)
        np.testing.assert_allclose(result.bias, expected, rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# Memory: no [N, K] array

def traced_peak(function, *args):
    """Peak bytes numpy and Python allocated while `function` ran (numpy reports its buffers to
    tracemalloc; memory-mapped logits are not allocations)."""
    tracemalloc.start()
    try:
        result = function(*args)
        return tracemalloc.get_traced_memory()[1], result
    finally:
        tracemalloc.stop()


@pytest.fixture(scope="module")
def larger_cache(tmp_path_factory, read_only_folders):
    """OUT/clip with 20,000 images x 100 classes on disk (8 MB of float32 logits, 16 MB as
    float64), analysed (its figures not rendered): the tests copy it or only read it."""
    rng = np.random.default_rng(1)
    num_images, num_classes = 20_000, 100
    labels = np.sort(rng.integers(0, num_classes, num_images))
    logits = (3 * rng.standard_normal((num_images, num_classes)) + 4 * np.eye(num_classes)[labels]
              + np.linspace(1, -1, num_classes)).astype(np.float32)
    wnids = np.array([f"n{index:08d}" for index in range(num_classes)])
    out = tmp_path_factory.mktemp("larger")
    cache.save_predictions(out / "clip" / "predictions.npz", cache.Predictions(
        logits=logits, labels=labels, paths=np.array([f"{wnids[k]}/{i}.JPEG" for i, k in enumerate(labels)]),
        wnids=wnids, names=wnids, meta={"model": "clip"}))
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setattr(run_analysis, "write_figures", lambda figures, in_workers: None)
        run_analysis.analyze(cache.load_predictions(out / "clip" / "predictions.npz"), out / "clip", out)
    return read_only_folders.register(out)


def whole_array_bytes(predictions):
    return predictions.logits.shape[0] * predictions.logits.shape[1] * 8


def test_analysis_allocates_no_logits_sized_array(larger_cache, monkeypatch, tmp_path):
    monkeypatch.setattr(run_analysis, "BLOCK_ELEMENTS", 1 << 14)
    # Figures are drawn from per-class numbers alone; matplotlib's own memory is not the analysis.
    monkeypatch.setattr(run_analysis, "draw_figures", lambda *args: {})
    monkeypatch.setattr(run_analysis, "draw_pseudo_labels", lambda *args: None)
    monkeypatch.setattr(run_analysis, "write_figures", lambda figures, in_workers: None)
    predictions = cache.load_predictions(larger_cache / "clip" / "predictions.npz")
    peak, _ = traced_peak(run_analysis.analyze, predictions, tmp_path / "clip", tmp_path)
    # Per image a few 8-byte numbers; a float64 copy of the logits would be 16 MB.
    assert peak < whole_array_bytes(predictions) / 4


@pytest.mark.parametrize("model", ["clip-la", "clip-pm"])
def test_training_free_runs_allocate_no_logits_sized_array(larger_cache, monkeypatch, tmp_path, model):
    monkeypatch.setattr(run_analysis, "BLOCK_ELEMENTS", 1 << 14)
    monkeypatch.setattr(training_free, "write_figure", lambda path, figure: None)  # la_sweep.png's pixels
    monkeypatch.setattr(run_analysis, "write_figures", lambda figures, in_workers: None)
    shutil.copytree(larger_cache / "clip", tmp_path / "clip")
    predictions = cache.load_predictions(tmp_path / "clip" / "predictions.npz")
    settings = DerivedRunSettings(logit_adjustment=LogitAdjustmentSettings(mode="online"))
    peak, debiased = traced_peak(run_kind(model).make, settings, tmp_path, tmp_path / model)
    assert isinstance(debiased.logits, np.memmap)  # read back from the streamed cache
    # clip-la keeps p̂ per batch of 64: 313 x 100 float64, 0.25 MB.
    assert peak < whole_array_bytes(predictions) / 4
