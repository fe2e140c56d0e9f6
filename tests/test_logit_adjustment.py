"""clip-la: DebiasPL's moving-average prior, the logit adjustment and the CLI, on synthetic logits.

No torch and no network: every CLI run starts from a clip run made of conftest's synthetic logits
(`clip_out`). Expected numbers are derived by hand in the comments, not by the code under test.
"""
import json

import numpy as np
import pytest
from matplotlib.figure import Figure

from analysis.class_roles import AT_LEAST_ONCE
from runs import cache
from debias import logit_adjustment
import plotting
import starter
from conftest import RUN_FILES

CONTRACT_FILES = RUN_FILES | {"prior.json", "la_sweep.png"}


def logits_of(probabilities):
    """Logits whose softmax is exactly `probabilities` (rows summing to 1)."""
    return np.log(np.asarray(probabilities, dtype=np.float64))


def run_clip_la(out, *options):
    return starter.main(["--model", "clip-la", "--out", str(out), *map(str, options)])


def read_run(out, model):
    run_dir = out / model
    return (cache.load_predictions(run_dir / "predictions.npz"),
            json.loads((run_dir / "metrics.json").read_text()),
            json.loads((run_dir / "centroids.json").read_text()))


# ---------------------------------------------------------------------------------------------
# logit_adjustment.py

def test_softmax_is_stable_and_normalised():
    probabilities = logit_adjustment.softmax([[1000.0, 1000.0 + np.log(3)], [0.0, 0.0]])
    np.testing.assert_allclose(probabilities, [[0.25, 0.75], [0.5, 0.5]])


def test_lambda_zero_leaves_logits_unchanged():
    logits = np.array([[2.0, -1.0, 0.5]])
    np.testing.assert_array_equal(logit_adjustment.adjust_logits(logits, [0.7, 0.2, 0.1], 0.0), logits)


def test_one_batch_without_momentum_or_threshold_divides_by_the_mean_softmax():
    logits = np.array([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0], [-3.0, 0.5, 4.0], [1.0, 1.0, 1.0]])
    estimate = logit_adjustment.estimate_prior(logits, [np.arange(4)], momentum=0.0, threshold=0.0)
    exponentials = np.exp(logits)
    mean_softmax = (exponentials / exponentials.sum(axis=1, keepdims=True)).mean(axis=0)
    np.testing.assert_allclose(estimate.prior, mean_softmax)
    np.testing.assert_allclose(logit_adjustment.adjust_logits(logits, estimate.prior, 1.0),
                               logits - np.log(mean_softmax))


def test_two_batches_by_hand():
    # m = 0.5, τ = 0.7, p̂0 = (0.5, 0.5).
    # Batch 1: (0.75, 0.25) is confident, (0.5, 0.5) is not: mean (0.75, 0.25);
    #   p̂1 = 0.5·(0.5, 0.5) + 0.5·(0.75, 0.25) = (0.625, 0.375).
    # Batch 2: (0.2, 0.8) and (0.1, 0.9) are both confident: mean (0.15, 0.85);
    #   p̂2 = 0.5·(0.625, 0.375) + 0.5·(0.15, 0.85) = (0.3875, 0.6125).
    probabilities = [[0.75, 0.25], [0.5, 0.5], [0.2, 0.8], [0.1, 0.9]]
    logits = logits_of(probabilities)
    estimate = logit_adjustment.estimate_prior(logits, [np.array([0, 1]), np.array([2, 3])],
                                               momentum=0.5, threshold=0.7)
    np.testing.assert_allclose(estimate.prior, [0.3875, 0.6125])
    assert (estimate.num_batches, estimate.num_updating_batches) == (2, 2)
    # Online: each batch uses p̂ before its own update.
    np.testing.assert_allclose(estimate.image_priors, [[0.5, 0.5], [0.5, 0.5],
                                                       [0.625, 0.375], [0.625, 0.375]])
    # Final, λ = 1: log(p / p̂2); the undecided (0.5, 0.5) image now goes to class 0.
    adjusted = logit_adjustment.adjust_logits(logits, estimate.prior, 1.0)
    np.testing.assert_allclose(adjusted, np.log([[0.75 / 0.3875, 0.25 / 0.6125],
                                                 [0.5 / 0.3875, 0.5 / 0.6125],
                                                 [0.2 / 0.3875, 0.8 / 0.6125],
                                                 [0.1 / 0.3875, 0.9 / 0.6125]]))
    assert adjusted[1].argmax() == 0
    # λ = 0.5 halves the shift: log 0.75 − 0.5·log 0.3875.
    np.testing.assert_allclose(logit_adjustment.adjust_logits(logits, estimate.prior, 0.5)[0, 0],
                               np.log(0.75) - 0.5 * np.log(0.3875))


def test_batch_without_confident_image_leaves_prior_unchanged():
    # m = 0.5, τ = 0.9. Batch 1: (0.95, 0.05) -> p̂1 = (0.725, 0.275). Batch 2 has top
    # probabilities 0.6 and 0.7 < 0.9: p̂ stays (0.725, 0.275). Batch 3 is debiased with it online.
    logits = logits_of([[0.95, 0.05], [0.6, 0.4], [0.3, 0.7], [0.5, 0.5]])
    estimate = logit_adjustment.estimate_prior(logits, [np.array([0]), np.array([1, 2]), np.array([3])],
                                               momentum=0.5, threshold=0.9)
    np.testing.assert_allclose(estimate.prior, [0.725, 0.275])
    np.testing.assert_allclose(estimate.image_priors[3], [0.725, 0.275])
    assert (estimate.num_batches, estimate.num_updating_batches) == (3, 1)
    assert logit_adjustment.confident_mean(logit_adjustment.softmax(logits[1:3]), 0.9) is None


def test_masked_average_is_a_mean_over_the_selected_images_only():
    probabilities = np.array([[0.96, 0.02, 0.02], [0.4, 0.3, 0.3], [0.0, 0.98, 0.02], [0.2, 0.2, 0.6]])
    # Rows 0 and 2 pass τ = 0.95: ((0.96 + 0) / 2, (0.02 + 0.98) / 2, (0.02 + 0.02) / 2).
    mean = logit_adjustment.confident_mean(probabilities, 0.95)
    np.testing.assert_allclose(mean, [0.48, 0.5, 0.02])
    assert mean.sum() == pytest.approx(1.0)
    # The prior's update from this batch, m = 0.99: p̂ = 0.99·uniform + 0.01·that mean, one [K]
    # distribution. DebiasPL's update_qhat computes probs * mask[:, None] and never averages it,
    # a [B, K] matrix, so its qhat stops being one; averaging the masked matrix over the whole
    # batch instead would shrink the mean by 2 of 4 images: (0.24, 0.25, 0.01).
    logits = np.log(np.maximum(probabilities, 1e-300))  # softmax(logits) = probabilities
    estimate = logit_adjustment.estimate_prior(logits, [np.arange(4)], momentum=0.99, threshold=0.95)
    assert estimate.prior.shape == (3,)
    np.testing.assert_allclose(estimate.prior, 0.99 / 3 + 0.01 * np.array([0.48, 0.5, 0.02]))


def test_shuffled_batches_partition_the_images_and_mix_classes():
    labels = np.repeat(np.arange(10), 20)  # sorted by class, like the cache
    batches = logit_adjustment.shuffled_batches(len(labels), 64, seed=0)
    assert [len(batch) for batch in batches] == [64, 64, 64, 8]
    np.testing.assert_array_equal(np.sort(np.concatenate(batches)), np.arange(len(labels)))
    assert len(np.unique(labels[batches[0]])) > 1
    again = logit_adjustment.shuffled_batches(len(labels), 64, seed=0)
    other = logit_adjustment.shuffled_batches(len(labels), 64, seed=1)
    assert all(np.array_equal(a, b) for a, b in zip(batches, again))
    assert not np.array_equal(batches[0], other[0])


def test_lambda_sweep_figure_uses_the_given_axes():
    strengths = np.linspace(0, 2, 21)
    figure = plotting.lambda_sweep_figure(strengths, np.linspace(0.5, 0.6, 21),
                                          np.linspace(0.4, 0.6, 21), 1.0)
    assert isinstance(figure, Figure)
    ax = Figure().add_subplot()
    assert plotting.lambda_sweep_figure(strengths, strengths, strengths, 0.3, ax=ax) is ax.figure
    assert len(ax.lines) == 3


# ---------------------------------------------------------------------------------------------
# starter.py --model clip-la

def test_cli_writes_the_contract_in_clips_order(clip_out):
    out = clip_out
    assert run_clip_la(out, "--batch-size", 8, "--la-threshold", 0.5) == 0
    assert CONTRACT_FILES <= {path.name for path in (out / "clip-la").iterdir()}
    clip, clip_summary, _ = read_run(out, "clip")
    adjusted, summary, centroids = read_run(out, "clip-la")
    assert summary["order"] == clip_summary["own_order"]
    roles = [query["role"] for query in centroids["by_predicted"]["queries"]]
    assert [role.removesuffix(AT_LEAST_ONCE) for role in roles] == [
        "most predicted", "least predicted", "most predicted by clip", "least predicted by clip"]
    assert [query["role"] for query in centroids["by_true"]["queries"]][:4] == roles
    prior = json.loads((out / "clip-la" / "prior.json").read_text())
    settings = {"momentum": 0.99, "threshold": 0.5, "lambda": 1.0, "mode": "final", "seed": 0,
                "batch_size": 8, "num_batches": 8}  # 60 images in batches of 8
    assert settings.items() <= prior["settings"].items()
    assert 1 <= prior["settings"]["num_updating_batches"] <= 8
    assert [entry["wnid"] for entry in prior["classes"]] == clip.wnids.tolist()
    values = np.array([entry["prior"] for entry in prior["classes"]])
    assert values.sum() == pytest.approx(1.0)
    # clip's bias favours class 0 over class 5, and p̂ learns it.
    assert values[0] > 1 / 6 > values[5]
    np.testing.assert_allclose(adjusted.logits, clip.logits - np.log(values), rtol=1e-6, atol=1e-5)
    assert adjusted.logits.dtype == np.float32
    for same in ("labels", "paths", "wnids", "names"):
        np.testing.assert_array_equal(getattr(adjusted, same), getattr(clip, same))
    assert adjusted.meta["model"] == "clip-la"
    assert adjusted.meta["logit_adjustment"] == prior["settings"]
    assert summary["settings"]["logit_adjustment"] == prior["settings"]
    sweep = [point["lambda"] for point in prior["lambda_sweep"]]
    assert len(sweep) == 21 and sweep[0] == 0 and sweep[-1] == 2
    at_chosen = next(point for point in prior["lambda_sweep"] if point["lambda"] == 1.0)
    assert at_chosen["accuracy"] == pytest.approx(summary["accuracy"])
    assert at_chosen["balanced_accuracy"] == pytest.approx(summary["balanced_accuracy"])


def test_cli_lambda_zero_reproduces_clip(clip_out):
    assert run_clip_la(clip_out, "--la-lambda", 0) == 0
    clip, clip_summary, _ = read_run(clip_out, "clip")
    adjusted, summary, _ = read_run(clip_out, "clip-la")
    np.testing.assert_array_equal(adjusted.logits, clip.logits)
    assert [c["predicted_count"] for c in summary["classes"]] == \
        [c["predicted_count"] for c in clip_summary["classes"]]


def test_cli_single_batch_without_momentum_or_threshold(clip_out):
    assert run_clip_la(clip_out, "--la-momentum", 0, "--la-threshold", 0,
                       "--batch-size", 1000) == 0
    clip, _, _ = read_run(clip_out, "clip")
    adjusted, _, _ = read_run(clip_out, "clip-la")
    logits = clip.logits.astype(np.float64)
    exponentials = np.exp(logits - logits.max(axis=1, keepdims=True))
    mean_softmax = (exponentials / exponentials.sum(axis=1, keepdims=True)).mean(axis=0)
    np.testing.assert_allclose(adjusted.logits, logits - np.log(mean_softmax), rtol=1e-6, atol=1e-5)


@pytest.mark.slow  # several analyses or reports: among the costliest of the edit-test loop
def test_cli_online_mode_debiases_each_batch_with_the_prior_before_its_update(clip_out):
    out = clip_out
    options = ["--batch-size", 10, "--la-threshold", 0.3, "--la-momentum", 0.5, "--la-lambda", 0.25]
    assert run_clip_la(out, *options, "--la-mode", "final") == 0
    final, _, _ = read_run(out, "clip-la")
    final_prior = json.loads((out / "clip-la" / "prior.json").read_text())
    assert run_clip_la(out, *options, "--la-mode", "online") == 0
    online, _, _ = read_run(out, "clip-la")
    online_prior = json.loads((out / "clip-la" / "prior.json").read_text())
    clip, _, _ = read_run(out, "clip")
    # The mode changes which p̂ each image is debiased with, not how p̂ is estimated.
    assert online_prior["classes"] == final_prior["classes"]
    assert online_prior["settings"]["mode"] == "online"
    first_batch, last_batch = logit_adjustment.shuffled_batches(len(clip.labels), 10, seed=0)[::5]
    # Online, the first batch meets the uniform p̂: its logits only shift by λ·log K.
    np.testing.assert_allclose(online.logits[first_batch], clip.logits[first_batch] + 0.25 * np.log(6),
                               rtol=1e-6, atol=1e-5)
    # Final, every image uses the last p̂; online, even the last batch uses the one before it.
    final_values = np.array([entry["prior"] for entry in final_prior["classes"]])
    np.testing.assert_allclose(final.logits, clip.logits - 0.25 * np.log(final_values),
                               rtol=1e-6, atol=1e-5)
    assert not np.allclose(online.logits[last_batch], final.logits[last_batch])
    # λ = 0.25 is off the 0.1 grid, so the sweep gains it.
    assert 0.25 in [point["lambda"] for point in online_prior["lambda_sweep"]]


def test_cli_warns_when_no_image_is_confident(clip_out, capsys):
    assert run_clip_la(clip_out, "--la-threshold", 1) == 0
    assert "p̂ stayed uniform" in capsys.readouterr().err
    clip, _, _ = read_run(clip_out, "clip")
    adjusted, _, _ = read_run(clip_out, "clip-la")
    np.testing.assert_array_equal(adjusted.logits.argmax(axis=1), clip.logits.argmax(axis=1))


def test_from_cache_redoes_the_analysis_from_clip_la_cache(clip_out):
    assert run_clip_la(clip_out, "--la-lambda", 1.5) == 0
    metrics_path = clip_out / "clip-la" / "metrics.json"
    before = metrics_path.read_text()
    metrics_path.unlink()
    # Other LA options are ignored: the cache already holds the adjusted logits.
    assert run_clip_la(clip_out, "--from-cache", "--la-lambda", 0) == 0
    assert metrics_path.read_text() == before


@pytest.mark.parametrize("model", ["clip-la", "clip-pm"])
def test_missing_clip_cache_is_a_one_line_error(tmp_path, capsys, model):
    assert starter.main(["--model", model, "--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert len(error.strip().splitlines()) == 1
    assert "python starter.py --model clip" in error and "Traceback" not in error
    assert not (tmp_path / model).exists()


@pytest.mark.parametrize("option, value", [("--la-momentum", "1.5"), ("--la-threshold", "-0.1"),
                                           ("--la-lambda", "nan"), ("--la-momentum", "abc")])
def test_out_of_range_options_are_rejected(tmp_path, option, value):
    with pytest.raises(SystemExit) as exit_info:
        run_clip_la(tmp_path, option, value)
    assert exit_info.value.code == 2


def test_more_passes_bring_the_prior_closer_to_the_confident_mean():
    # Every image has the same softmax q, so each batch pulls p̂ towards q: after n batches,
    # p̂ = q + m^n (uniform - q).
    q = np.array([0.7, 0.2, 0.1])
    logits = np.tile(np.log(q), (30, 1))
    uniform = np.full(3, 1 / 3)
    for passes in (1, 3):
        batches = logit_adjustment.shuffled_batches(30, 10, seed=0, passes=passes)
        assert len(batches) == 3 * passes
        for start in range(0, len(batches), 3):  # each pass covers every image once
            assert sorted(np.concatenate(batches[start:start + 3]).tolist()) == list(range(30))
        estimate = logit_adjustment.estimate_prior(logits, batches, momentum=0.9, threshold=0.0)
        np.testing.assert_allclose(estimate.prior, q + 0.9 ** (3 * passes) * (uniform - q))
        # Online mode uses p̂ as each image's batch found it in the last pass.
        last_pass_start = q + 0.9 ** (3 * (passes - 1)) * (uniform - q)
        first_batch_of_last_pass = batches[3 * (passes - 1)]
        np.testing.assert_allclose(estimate.image_priors[first_batch_of_last_pass],
                                   np.tile(last_pass_start, (10, 1)))
