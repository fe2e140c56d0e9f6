"""clip-pm: prior matching against plain Sinkhorn-Knopp (oracles.sinkhorn), and its CLI.

No torch: every CLI run starts from conftest's synthetic clip run (`clip_out`). Expected values
come from the oracles and direct numpy computations, never from the code under test.
"""
import json

import numpy as np
import pytest

from runs import cache
from debias import logit_adjustment
import starter
from debias import training_free
from conftest import RUN_FILES
from oracles import mean_softmax, sinkhorn


def biased_logits(seed, num_images=120, num_classes=5, scale=3.0):
    rng = np.random.default_rng(seed)
    return scale * rng.normal(size=(num_images, num_classes)) + np.linspace(2, -2, num_classes)


@pytest.mark.parametrize("target", [None, [0.1, 0.15, 0.2, 0.25, 0.3]])
def test_prior_matching_is_entropic_optimal_transport(target):
    logits = biased_logits(0)
    num_images, num_classes = logits.shape
    column_sums = np.full(num_classes, 1 / num_classes) if target is None else np.array(target)
    match = logit_adjustment.match_prior(logits, target)
    assert match.converged and 0 < match.iterations < logit_adjustment.MATCH_MAX_ITERATIONS
    # Cost −log softmax(s) at ε = 1: the Gibbs kernel exp(−cost/ε) is softmax(s) itself.
    bias, plan, _ = sinkhorn(logits, column_sums)
    np.testing.assert_allclose(plan.sum(axis=0), column_sums, atol=1e-12)
    np.testing.assert_allclose(plan.sum(axis=1), 1 / num_images, rtol=1e-9)
    np.testing.assert_array_equal((logits - match.bias).argmax(axis=1), plan.argmax(axis=1))
    # The column scaling is exp(−b), up to a constant factor.
    np.testing.assert_allclose(match.bias, bias, atol=1e-7)
    assert match.bias.mean() == pytest.approx(0, abs=1e-12)
    debiased_mean = mean_softmax(logits - match.bias)
    assert np.abs(debiased_mean - column_sums).max() == pytest.approx(match.deviation, abs=1e-15)
    assert match.deviation < 1e-9


def test_first_update_is_debiaspls_prior_from_one_batch_without_momentum_or_threshold():
    logits = biased_logits(1)
    one_update = logit_adjustment.match_prior(logits, max_iterations=1)
    assert (one_update.iterations, one_update.converged) == (1, False)
    estimate = logit_adjustment.estimate_prior(logits, [np.arange(len(logits))], momentum=0.0,
                                               threshold=0.0)
    expected = np.log(estimate.prior)
    np.testing.assert_allclose(one_update.bias, expected - expected.mean(), atol=1e-12)
    deviation = np.abs(mean_softmax(logits - one_update.bias) - 1 / logits.shape[1]).max()
    assert one_update.deviation == pytest.approx(deviation, rel=1e-9)


def test_balanced_logits_need_no_update_and_far_classes_stay_finite():
    # Every class is every image's top class once: the mean softmax is already uniform.
    balanced = np.log(np.full((4, 4), 0.1) + 0.6 * np.eye(4))
    match = logit_adjustment.match_prior(balanced)
    assert (match.iterations, match.converged) == (0, True)
    np.testing.assert_array_equal(match.bias, np.zeros(4))
    # Class 2 lies 2,000 nats below the others in every image: exp() underflows to 0 outside
    # the log domain, yet it still gets its share.
    far = biased_logits(2, num_classes=3)
    far[:, 2] -= 2000
    match = logit_adjustment.match_prior(far)
    assert match.converged and np.isfinite(match.bias).all()
    assert (far - match.bias).argmax(axis=1).tolist().count(2) > 0


# ---------------------------------------------------------------------------------------------
# starter.py --model clip-pm

def run_clip_pm(out, *options):
    return starter.main(["--model", "clip-pm", "--out", str(out), *map(str, options)])


def read_prior(out):
    return json.loads((out / "clip-pm" / "prior.json").read_text())


def test_cli_writes_the_contract_in_clips_order(clip_out, capsys):
    assert run_clip_pm(clip_out) == 0
    assert "prior matching converged after" in capsys.readouterr().out
    assert RUN_FILES | {"prior.json"} <= {path.name for path in (clip_out / "clip-pm").iterdir()}
    clip = cache.load_predictions(clip_out / "clip" / "predictions.npz")
    matched = cache.load_predictions(clip_out / "clip-pm" / "predictions.npz")
    clip_summary = json.loads((clip_out / "clip" / "metrics.json").read_text())
    summary = json.loads((clip_out / "clip-pm" / "metrics.json").read_text())
    centroids = json.loads((clip_out / "clip-pm" / "centroids.json").read_text())
    assert summary["order"] == clip_summary["own_order"]
    assert len(centroids["by_predicted"]["queries"]) == 4
    prior = read_prior(clip_out)
    settings = prior["settings"]
    assert settings["target"] == "uniform" and settings["converged"] is True
    assert settings["final_deviation"] < settings["tolerance"] == 1e-9
    assert matched.meta["prior_matching"] == settings == summary["settings"]["prior_matching"]
    assert [entry["wnid"] for entry in prior["classes"]] == clip.wnids.tolist()
    bias = np.array([entry["bias"] for entry in prior["classes"]])
    np.testing.assert_allclose(matched.logits, clip.logits - bias, rtol=1e-6, atol=1e-5)
    # Debiased soft predictions are balanced (up to the cache's float32 rounding).
    np.testing.assert_allclose(mean_softmax(matched.logits.astype(np.float64)), 1 / 6, atol=1e-6)
    # The implied prior is the p̂ with s − log p̂ = s − b up to a constant: clip's bias favours
    # class 0 over class 5, and so does the prior.
    implied = np.exp(bias) / np.exp(bias).sum()
    np.testing.assert_allclose([entry["prior"] for entry in prior["classes"]], implied, rtol=1e-12)
    assert implied[0] > 1 / 6 > implied[5]
    np.testing.assert_allclose([entry["target"] for entry in prior["classes"]], 1 / 6)


def test_cli_target_counts_are_normalised_with_a_note(clip_out, capsys):
    clip = cache.load_predictions(clip_out / "clip" / "predictions.npz")
    counts = np.arange(1, 7)
    path = clip_out / "target.json"
    path.write_text(json.dumps({str(wnid): int(count) for wnid, count in zip(clip.wnids, counts)}))
    assert run_clip_pm(clip_out, "--pm-target", path) == 0
    assert f"sum to {counts.sum()}" in capsys.readouterr().err
    prior = read_prior(clip_out)
    assert prior["settings"]["target"] == str(path)
    target = counts / counts.sum()
    np.testing.assert_allclose([entry["target"] for entry in prior["classes"]], target)
    matched = cache.load_predictions(clip_out / "clip-pm" / "predictions.npz")
    np.testing.assert_allclose(mean_softmax(matched.logits.astype(np.float64)), target, atol=1e-6)
    bias = np.array([entry["bias"] for entry in prior["classes"]])
    implied = target * np.exp(bias)
    np.testing.assert_allclose([entry["prior"] for entry in prior["classes"]], implied / implied.sum())


@pytest.mark.parametrize("content, message", [
    ("[0.5, 0.5]", "one JSON object"),
    ("{not json", "cannot be read"),
    ({"drop": "n04229816"}, "lacks 1 of the dataset's 6 classes: n04229816 ("),
    ({"extra": "n99999999"}, "names 1 class that the dataset does not have: 'n99999999'; its keys "
                             "must be the class folder names (wnids such as n01558993) or class names"),
    ({"extra": "n0155899"}, "'n0155899' (did you mean n01558993?)"),
    ({"n01558993": 0}, "gives n01558993 the proportion 0"),
    ({"n01558993": -0.1}, "positive number"),
    ({"n01558993": "a lot"}, "positive number"),
])
def test_cli_bad_target_is_a_one_sentence_error(clip_out, capsys, content, message):
    clip = cache.load_predictions(clip_out / "clip" / "predictions.npz")
    if isinstance(content, dict):  # a change to a valid uniform target
        change = dict(content)
        proportions = {str(wnid): 1 / 6 for wnid in clip.wnids}
        proportions.pop(change.pop("drop", None), None)
        if "extra" in change:
            proportions[change.pop("extra")] = 0.1
        proportions.update(change)
        content = json.dumps(proportions)
    path = clip_out / "target.json"
    path.write_text(content)
    assert run_clip_pm(clip_out, "--pm-target", path) == 2
    error = capsys.readouterr().err
    assert len(error.strip().splitlines()) == 1 and message in error
    assert not (clip_out / "clip-pm").exists()


def test_cli_target_keyed_by_class_names(clip_out):
    clip = cache.load_predictions(clip_out / "clip" / "predictions.npz")
    counts = np.arange(1, len(clip.names) + 1)
    path = clip_out / "target-by-name.json"
    path.write_text(json.dumps({str(name): int(count) for name, count in zip(clip.names, counts)}))
    assert run_clip_pm(clip_out, "--pm-target", path) == 0
    np.testing.assert_allclose([entry["target"] for entry in read_prior(clip_out)["classes"]],
                               counts / counts.sum())


def test_cli_warns_with_the_deviation_when_not_converged(clip_out, capsys, monkeypatch):
    monkeypatch.setattr(logit_adjustment, "MATCH_MAX_ITERATIONS", 2)
    assert run_clip_pm(clip_out) == 0
    error = capsys.readouterr().err
    settings = read_prior(clip_out)["settings"]
    assert (settings["iterations"], settings["converged"]) == (2, False)
    clip = cache.load_predictions(clip_out / "clip" / "predictions.npz")
    matched = cache.load_predictions(clip_out / "clip-pm" / "predictions.npz")
    deviation = np.abs(mean_softmax(matched.logits.astype(np.float64)) - 1 / 6).max()
    assert settings["final_deviation"] == pytest.approx(deviation, rel=1e-3)
    assert "did not converge in 2 iterations" in error and f"{settings['final_deviation']:.3g}" in error
    assert not np.allclose(matched.logits, clip.logits)


def test_uniform_target_is_stated_and_an_unbalanced_dataset_gets_the_option():
    assert training_free.uniform_target_note(np.array([50, 50])) == (
        "clip-pm target: uniform, 1/2 of the images to each class")
    assert "hold 10 to 50 images: pass --pm-target FILE" in training_free.uniform_target_note(
        np.array([50, 10, 30]))
