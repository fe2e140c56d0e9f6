"""The study across runs (`starter.py --report`: study.pdf, study.md, runs.csv, classes.csv) on
synthetic runs: two CLIP models on one dataset (RN50 without features as clip, ViT-B-32 with them),
one on another dataset whose classes hold different numbers of images, and clip-pm on clip. Its
numbers are checked against numpy, scipy and scikit-learn on the caches, never against the study's
own code."""
import csv
import json
import re
import shutil

import numpy as np
import pypdf
import pytest
from scipy.stats import entropy, spearmanr
from sklearn.metrics import balanced_accuracy_score

import starter
import study
from analysis import run_analysis
from runs import cache, descriptors
from study import figures
from study.agreement import agreements
from cli.commands import for_out
from study.runs import study_runs

DIMENSION = 16
TOY_WNIDS = [f"n{index:08d}" for index in range(8)]
OTHER_WNIDS = [f"n{index:08d}" for index in range(100, 105)]
VIT_RUN = "toyset-clip-ViT-B-32-openai"
OTHER_RUN = "otherset-clip-RN101-openai"
MISMATCHED = TOY_WNIDS[2]  # the class clip-ca's alignment.json names for clip


def unit(vectors):
    return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)


def clip_like_predictions(seed, wnids, sizes, meta, bias=None, features=True):
    """100 x the cosine of unit image and text embeddings (with a per-class logit bias): no torch."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(wnids)), sizes)
    text = unit(rng.normal(size=(len(wnids), DIMENSION))).astype(np.float32)
    images = unit(1.2 * text[labels] + rng.normal(size=(len(labels), DIMENSION)) / 2).astype(np.float32)
    logits = 100 * images @ text.T + (0 if bias is None else np.asarray(bias))
    return cache.Predictions(
        logits=logits.astype(np.float32), labels=labels,
        paths=np.array([f"{wnids[label]}/img{i}.JPEG" for i, label in enumerate(labels)]),
        wnids=np.array(wnids), names=np.array([f"class {wnid}" for wnid in wnids]),
        meta={"model": "clip", "weights": "openai", "logit_scale": 100.0, **meta},
        image_features=images if features else None, text_features=text if features else None)


def add_run(out, run_id, predictions):
    run_dir = out / run_id
    cache.save_predictions(run_dir / "predictions.npz", predictions)
    descriptors.write_descriptor(run_dir, predictions.meta)
    run_analysis.analyze(predictions, run_dir, out)


@pytest.fixture(scope="module")
def study_out(tmp_path_factory):
    """OUT with the four runs, clip-ca's alignment.json for clip, and the study written (the CLI's
    --report, which adds report.pdf and explorer.html, is the test without the homework's runs)."""
    out = tmp_path_factory.mktemp("study")
    add_run(out, "clip", clip_like_predictions(0, TOY_WNIDS, 12, {"dataset": "toyset"},
                                               bias=[4, 3, 2, 1, 0, -1, -2, -3], features=False))
    add_run(out, VIT_RUN, clip_like_predictions(1, TOY_WNIDS, 12, {"dataset": "toyset",
                                                                   "architecture": "ViT-B-32"},
                                                bias=[3, 0, 1, 0, 2, 0, -3, 0]))
    add_run(out, OTHER_RUN, clip_like_predictions(2, OTHER_WNIDS, [4, 8, 12, 16, 20],
                                                  {"dataset": "otherset", "architecture": "RN101"},
                                                  bias=[2, 0, 0, 0, -2], features=False))
    assert starter.main(["--model", "clip-pm", "--out", str(out)]) == 0
    (out / "clip-ca").mkdir()
    (out / "clip-ca" / "alignment.json").write_text(json.dumps({"mismatched": [{"wnid": MISMATCHED}]}))
    study.write_study(out, for_out(out))
    return out


def read_csv(path):
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def number(cell):
    return float("nan") if cell == "" else float(cell)


def figure4_rho(logits, predicted, counts, centered):
    """Figure 4's ρ from scratch: each class's predicted count against the mean cosine of its (up
    to) 10 nearest centroids of the logits grouped by pseudo-label."""
    defined = np.flatnonzero(counts)
    centroids = np.array([logits[predicted == k].mean(axis=0) for k in defined])
    if centered:
        centroids = centroids - centroids.mean(axis=1, keepdims=True)
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    cosine = centroids @ centroids.T
    means = [np.mean(np.sort(np.delete(row, k))[::-1][:10]) for k, row in enumerate(cosine)]
    return spearmanr(counts[defined], means).statistic


def from_cache(out, run_id):
    """The run's measures from its predictions.npz, read with numpy alone."""
    with np.load(out / run_id / "predictions.npz") as cached:
        logits, labels = cached["logits"].astype(np.float64), cached["labels"]
    predicted = logits.argmax(axis=1)
    counts = np.bincount(predicted, minlength=logits.shape[1])
    true_counts = np.bincount(labels, minlength=logits.shape[1])
    pairwise = np.abs(counts[:, None] - counts[None, :]).mean()
    return {"images": len(labels), "classes": logits.shape[1], "accuracy": np.mean(predicted == labels),
            "balanced_accuracy": balanced_accuracy_score(labels, predicted),
            "max_predicted": counts.max(), "min_predicted": counts.min(),
            "never_predicted": np.sum(counts == 0),
            "kl_to_uniform": entropy(counts, np.ones(len(counts))),
            "kl_to_true": entropy(counts, true_counts), "gini": pairwise / (2 * counts.mean()),
            "figure4_rho_literal": figure4_rho(logits, predicted, counts, centered=False),
            "figure4_rho_centered": figure4_rho(logits, predicted, counts, centered=True),
            "counts": counts, "true_counts": true_counts}


def test_runs_csv_equals_the_caches_computed_independently(study_out):
    rows = read_csv(study_out / "runs.csv")
    assert [row["run"] for row in rows] == ["clip", "clip-pm", VIT_RUN, OTHER_RUN]  # -pm by its source
    for row in rows:
        expected = from_cache(study_out, row["run"])
        for key in ("images", "classes", "max_predicted", "min_predicted", "never_predicted"):
            assert int(row[key]) == expected[key], (row["run"], key)
        for key in ("accuracy", "balanced_accuracy", "kl_to_uniform", "kl_to_true", "gini",
                    "figure4_rho_literal", "figure4_rho_centered"):
            assert number(row[key]) == pytest.approx(expected[key], rel=1e-6, abs=1e-12), (row["run"], key)
    by_run = {row["run"]: row for row in rows}
    assert by_run[OTHER_RUN]["dataset"] == "otherset" and by_run[OTHER_RUN]["balanced_dataset"] == "false"
    assert by_run["clip-pm"]["source"] == "clip" and by_run["clip-pm"]["kind"] == "training-free"
    assert by_run["clip"]["mismatched_classes"] == "1"  # clip-ca's alignment.json: known
    # Its own analysis ran Algorithm 1 on its features: what its why.json found.
    vit_why = json.loads((study_out / VIT_RUN / "why.json").read_text())
    assert by_run[VIT_RUN]["mismatched_classes"] == str(len(vit_why["concepts"]["mismatch"]["mismatched"]))
    assert by_run[VIT_RUN]["model"] == "CLIP ViT-B-32 zero-shot"


def test_classes_csv_holds_each_run_and_class_with_its_concept_gap(study_out):
    rows = read_csv(study_out / "classes.csv")
    assert len(rows) == 3 * len(TOY_WNIDS) + len(OTHER_WNIDS)
    for run_id in ("clip", "clip-pm", VIT_RUN, OTHER_RUN):
        expected = from_cache(study_out, run_id)
        mine = [row for row in rows if row["run"] == run_id]
        assert [int(row["predicted_count"]) for row in mine] == expected["counts"].tolist()
        assert [int(row["true_count"]) for row in mine] == expected["true_counts"].tolist()
    with np.load(study_out / VIT_RUN / "predictions.npz") as cached:
        images, text, labels = cached["image_features"], cached["text_features"], cached["labels"]
    prototypes = np.array([images[labels == k].mean(axis=0) for k in range(len(text))])
    gaps = np.sum(unit(prototypes) * unit(text), axis=1)
    vit = [row for row in rows if row["run"] == VIT_RUN]
    np.testing.assert_allclose([number(row["concept_gap"]) for row in vit], gaps, rtol=1e-5)
    assert {row["concept_gap"] for row in rows if row["run"] == "clip"} == {""}  # no features
    assert [row["concept_mismatched"] for row in rows if row["run"] == "clip"] == [
        "true" if wnid == MISMATCHED else "false" for wnid in TOY_WNIDS]


def test_agreement_is_spearman_of_the_runs_counts_per_dataset(study_out):
    runs, _ = study_runs(study_out, for_out(study_out))
    found = {agreement.label: agreement for agreement in agreements(runs)}
    assert sorted(found) == ["otherset", "toyset"]
    toy = found["toyset"]
    counts = {run_id: from_cache(study_out, run_id)["counts"] for run_id in toy.runs}
    for i, first in enumerate(toy.runs):
        for j, second in enumerate(toy.runs):
            assert toy.rho[i, j] == pytest.approx(spearmanr(counts[first], counts[second]).statistic)
    assert toy.model_runs == ["clip", VIT_RUN]  # clip-pm aside from the shared classes
    images = from_cache(study_out, "clip")["true_counts"]
    over = [TOY_WNIDS[k] for k in range(len(TOY_WNIDS))
            if counts["clip"][k] > images[k] and counts[VIT_RUN][k] > images[k]]
    assert sorted(shared.wnid for shared in toy.over_predicted) == over
    pairs = [spearmanr(counts[a], counts[b]).statistic for i, a in enumerate(toy.runs) for b in toy.runs[:i]]
    assert f"median {np.median(pairs):.3f}" in (study_out / "study.md").read_text()


def markdown_sections(text):
    return {part.split("\n", 1)[0]: part for part in re.split(r"^## ", text, flags=re.MULTILINE)[1:]}


def test_why_section_for_every_clip_run_with_features(study_out):
    sections = markdown_sections((study_out / "study.md").read_text())
    vit = next(body for title, body in sections.items() if title.startswith(f"#3 {VIT_RUN}"))
    assert "Concept mismatch: the 8 classes whose text embedding is farthest" in vit
    assert "Concept confusion: " in vit and f"among {VIT_RUN}'s" in vit
    clip = next(body for title, body in sections.items() if title.startswith("#1 clip"))
    assert "No concept analysis: the run's cache holds no CLIP image features" in clip
    pdf = " ".join(page.extract_text() for page in pypdf.PdfReader(study_out / "study.pdf").pages)
    assert "Concept confusion:" in " ".join(pdf.split())


def test_a_study_without_the_homeworks_runs_is_no_homework(study_out, tmp_path, capsys):
    for run_id in (VIT_RUN, OTHER_RUN):
        shutil.copytree(study_out / run_id, tmp_path / run_id)
    assert starter.main(["--report", "--out", str(tmp_path)]) == 0
    assert not (tmp_path / "report.pdf").exists() and "no report.pdf" in capsys.readouterr().err
    pages = [" ".join(page.extract_text().split()) for page in pypdf.PdfReader(tmp_path / "study.pdf").pages]
    text = " ".join(pages)
    assert "No results for" not in text and "Homework" not in text and "homework" not in text
    assert pages[0].startswith(f"Study of 2 runs in {tmp_path} ")  # the title
    assert all(f"Study of 2 runs in {tmp_path} (generated" in page for page in pages)  # footer
    assert (tmp_path / "study.md").read_text().startswith(f"# Study of 2 runs in {tmp_path}\n")


def test_imbalance_figure_draws_each_finite_run_and_names_the_others():
    figure = figures.imbalance_figure(["1", "2", "3"], ["a", "a", "b"], [0.5, 0.6, 0.7],
                                      [0.5, 0.6, 0.7], [0.2, np.inf, 0.1], [0.3, 0.2, 0.1],
                                      [None, 0, None])
    kl_axes, gini_axes = figure.axes
    assert sum(len(points.get_offsets()) for points in kl_axes.collections) == 2
    assert sum(len(points.get_offsets()) for points in gini_axes.collections) == 3
    assert "not shown (undefined or infinite): 2" in kl_axes.get_xlabel()
    assert len([text for text in gini_axes.texts if text.arrow_patch is not None]) == 1
