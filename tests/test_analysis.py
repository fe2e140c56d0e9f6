"""analysis.py's JSON against direct numpy computations: the centered centroid neighbours and
who steals from whom."""
import json
from collections import Counter

import numpy as np
import pytest

from analysis import run_analysis, terminal_text
from runs import descriptors
from cli.commands import for_out
from conftest import synthetic_predictions
from oracles import group_means, nearest_centroids


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    """clip and debiaspl on 8 classes with CLIP-like logits (a large shared offset), analysed."""
    out = tmp_path_factory.mktemp("analysis")
    runs = {}
    for model, seed, bias in (("clip", 0, [2.0, 1.5, 1.0, 0.5, 0, -0.5, -1.0, -3.0]), ("debiaspl", 1, None)):
        predictions = synthetic_predictions(model, seed, num_classes=8, images_per_class=12, bias=bias)
        predictions.logits += 25  # softmax and predictions unchanged; literal cosines near 1
        run_analysis.analyze(predictions, out / model, out)
        runs[model] = (predictions, *(json.loads((out / model / name).read_text())
                                      for name in ("metrics.json", "centroids.json", "pseudo_labels.json")))
    return runs


@pytest.mark.parametrize("model", ["clip", "debiaspl"])
def test_centroid_neighbours_literal_and_centered_against_numpy(analysed, model):
    predictions, _, centroids, _ = analysed[model]
    logits = predictions.logits.astype(np.float64)
    shifted = logits - logits.mean(axis=1, keepdims=True)
    groups = {"by_predicted": logits.argmax(axis=1), "by_true": predictions.labels}
    wnids = predictions.wnids.tolist()
    assert [key for key in centroids if key != "zero_prediction_rule"] == ["by_predicted", "by_true", "centered"]
    assert list(centroids["centered"]) == ["by_predicted", "by_true"]
    for grouping, group_of in groups.items():
        for values, part in ((logits, centroids[grouping]), (shifted, centroids["centered"][grouping])):
            assert [q["role"] for q in part["queries"]] == [q["role"] for q in centroids[grouping]["queries"]]
            for query in part["queries"]:
                expected = nearest_centroids(group_means(values, group_of, len(wnids)),
                                             wnids.index(query["wnid"]), 10)
                assert [n["wnid"] for n in query["neighbors"]] == [wnids[g] for g, _ in expected]
                np.testing.assert_allclose([n["cosine"] for n in query["neighbors"]],
                                           [c for _, c in expected], rtol=0, atol=1e-9)
    literal = [n["cosine"] for q in centroids["by_true"]["queries"] for n in q["neighbors"]]
    centered = [n["cosine"] for q in centroids["centered"]["by_true"]["queries"] for n in q["neighbors"]]
    assert min(literal) > 0.99 and min(centered) < 0.9  # the shared offset crowds the literal ones


def expected_cell(predictions, true, predicted, count):
    return {"true": {"wnid": str(predictions.wnids[true]), "name": str(predictions.names[true])},
            "predicted": {"wnid": str(predictions.wnids[predicted]), "name": str(predictions.names[predicted])},
            "count": count, "share_of_true": count / int(np.sum(predictions.labels == true))}


@pytest.mark.parametrize("model", ["clip", "debiaspl"])
def test_who_steals_from_whom_against_counted_pairs(analysed, model):
    predictions, summary, _, _ = analysed[model]
    pairs = Counter(zip(predictions.labels.tolist(), predictions.logits.argmax(axis=1).tolist()))
    ranked = sorted((-n, t, p) for (t, p), n in pairs.items() if t != p)
    assert summary["top_confusions"] == [expected_cell(predictions, t, p, -n) for n, t, p in ranked[:20]]
    clip_order = analysed["clip"][1]["own_order"]
    roles = [("most predicted", summary["own_order"][0], "incoming"),
             ("least predicted", summary["own_order"][-1], "outgoing")]
    if model != "clip":
        roles += [("most predicted by clip", clip_order[0], "incoming"),
                  ("least predicted by clip", clip_order[-1], "outgoing")]
    wnids = predictions.wnids.tolist()
    assert [(e["role"], e["wnid"], e["direction"]) for e in summary["class_confusions"]] == roles
    for entry in summary["class_confusions"]:
        index = wnids.index(entry["wnid"])
        side = 2 if entry["direction"] == "incoming" else 1  # predicted or true index in ranked
        expected = [expected_cell(predictions, t, p, -n) for n, t, p in ranked
                    if (n, t, p)[side] == index][:5]
        assert entry["confusions"] == expected


def test_terminal_text_shows_both_kinds_and_six_decimal_literal_cosines(analysed):
    _, summary, centroids, selection = analysed["debiaspl"]
    text = terminal_text.format_report(summary, centroids, selection)
    literal = centroids["by_predicted"]["queries"][0]
    assert "[" + ", ".join(f"{n['cosine']:.6f}" for n in literal["neighbors"]) + "]" in text
    centered = centroids["centered"]["by_predicted"]["queries"][0]
    assert "[" + ", ".join(f"{n['cosine']:.4f}" for n in centered["neighbors"]) + "]" in text
    first = summary["top_confusions"][0]
    assert f"{first['true']['name']} -> {first['predicted']['name']}" in text
    for label in ("Q2(a)", "Q2(b)", "Q2(c)", "most predicted by clip", "its images go to"):
        assert label in text
    assert descriptors.SIMULATED not in text  # only simulated runs say so


def test_every_image_predicted_as_one_class_says_why_there_are_no_neighbours(tmp_path):
    """What random weights do: the most predicted class has a centroid but no other class does."""
    predictions = synthetic_predictions("clip", 0, num_classes=4, images_per_class=3)
    predictions.logits[:, 2] += 100  # every image predicted as class 2
    _, centroids, _ = run_analysis.analyze(predictions, tmp_path / "clip", tmp_path)
    most, least = centroids["by_predicted"]["queries"]
    assert most["wnid"] == predictions.wnids[2] and most["note"] == run_analysis.NO_OTHER_CENTROID
    assert least["note"] == run_analysis.GROUPINGS["by_predicted"][1]  # its own group is empty
    assert all(len(query["neighbors"]) == 3 for query in centroids["by_true"]["queries"])


def test_an_unbalanced_dataset_shows_each_class_true_count(tmp_path):
    """Classes with different numbers of images: the histograms mark each class's count of
    images on its bar instead of the balanced line N/K, which no class is meant to reach."""
    predictions = synthetic_predictions("clip", 0)
    keep = np.flatnonzero((predictions.labels != 0) | (np.arange(len(predictions.labels)) % 2 == 0))
    for key in ("logits", "labels", "paths"):
        setattr(predictions, key, getattr(predictions, key)[keep])
    summary, _, _ = run_analysis.analyze(predictions, tmp_path / "clip", tmp_path)
    figure = run_analysis.draw_histograms(summary, "unbalanced")["histogram_recall.png"]
    ax = figure.axes[0]
    labels = [line.get_label() for line in ax.lines]
    assert "images of the class" in labels and not any(label.startswith("balanced") for label in labels)
    shown = ax.lines[labels.index("images of the class")].get_ydata()
    by_wnid = {entry["wnid"]: entry["true_count"] for entry in summary["classes"]}
    assert list(shown) == [by_wnid[wnid] for wnid in summary["order"]]


def test_three_never_predicted_classes_get_the_zero_prediction_rule(tmp_path):
    """Classes 5, 6 and 7 are never predicted: (c) answers with the least predicted class that was
    (counted here with numpy), names the three beside it, adds their by-true-label neighbours
    (computed directly) and states the rule in centroids.json, the terminal and the report."""
    from analysis.class_roles import ZERO_PREDICTION_RULE
    import report
    predictions = synthetic_predictions("clip", 3, num_classes=8, images_per_class=12)
    predictions.logits[:, 5:] -= 100
    summary, centroids, selection = run_analysis.analyze(predictions, tmp_path / "clip", tmp_path)
    counts = np.bincount(predictions.logits.argmax(axis=1), minlength=8)
    never = [predictions.wnids[i] for i in np.flatnonzero(counts == 0)]
    assert len(never) == 3
    least = min((count, -index) for index, count in enumerate(counts) if count)  # ties: last index
    query = centroids["by_predicted"]["queries"][1]
    assert query["wnid"] == predictions.wnids[-least[1]] and query["neighbors"]
    assert query["role"] == "least predicted with ≥ 1 prediction"
    assert [entry["wnid"] for entry in query["never_predicted"]] == never
    assert query["predicted_counts"] == {"clip": int(least[0])}
    assert centroids["zero_prediction_rule"] == ZERO_PREDICTION_RULE
    secondary = [q for q in centroids["by_true"]["queries"] if q["role"] == "never predicted by clip"]
    assert [q["wnid"] for q in secondary] == never
    wnids = predictions.wnids.tolist()
    for entry in secondary:
        expected = nearest_centroids(group_means(predictions.logits, predictions.labels, len(wnids)),
                                     wnids.index(entry["wnid"]), 10)
        assert [n["wnid"] for n in entry["neighbors"]] == [wnids[g] for g, _ in expected]
    text = terminal_text.format_report(summary, centroids, selection)
    assert ZERO_PREDICTION_RULE in text and "never predicted by clip, so without a centroid" in text
    report.write_report(tmp_path, for_out(tmp_path))
    markdown = (tmp_path / "report.md").read_text()
    q1c = markdown.split("## Q1(c)")[1].split("## Q2")[0]
    assert ZERO_PREDICTION_RULE in q1c and all(f"class {wnid}" in q1c for wnid in never)
    explanations = markdown.split("## Additional explanations")[1]
    assert all(f"class {wnid}: " in explanations for wnid in never)  # the secondary view's lines
