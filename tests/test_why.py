"""why.json and Figure 4's test: in every run's metrics.json and terminal text; the causes of
imbalance (concept gap, CAP's margin) where the cache keeps CLIP's features, a note where not."""
import json

import numpy as np

from analysis import run_analysis
from runs import cache
from analysis import concepts
import plotting
from analysis import why
from conftest import SUBSET_WNIDS
from runs.outputs import write_json


def read(path):
    return json.loads(path.read_text())


def test_figure4_claim_is_in_metrics_and_said_plainly(synthetic_runs, capsys):
    for model in ("clip", "debiaspl"):
        summary = read(synthetic_runs / model / "metrics.json")
        for kind in ("literal", "centered"):
            claim = summary["figure4_claim"][kind]
            assert ("is supported on this run" in claim["sentence"]) == claim["supported"]
        assert read(synthetic_runs / model / "why.json")["concepts"] is None  # logits only
    lines = why.figure4_lines(summary["figure4_claim"])
    assert lines[1].startswith("literal centroids: Figure 4's claim")


def test_runs_with_features_get_concept_gaps_and_the_margin(real_runs):
    diagnosis = read(real_runs / "clip" / "why.json")
    clip = cache.load_predictions(real_runs / "clip" / "predictions.npz")
    gaps = diagnosis["concepts"]["gap"]["by_true"]
    assert [entry["wnid"] for entry in gaps] == SUBSET_WNIDS
    prototypes = concepts.visual_prototypes(clip.image_features, clip.labels, len(SUBSET_WNIDS))
    expected = np.sum(concepts.unit_rows(clip.text_features) * prototypes, axis=1)
    np.testing.assert_allclose([entry["cosine"] for entry in gaps], expected, rtol=1e-9)
    margin = diagnosis["concepts"]["margin"]
    assert len(margin["pairs"]) <= 20 and 0 <= margin["coinciding_with_top_confusions"] <= len(margin["pairs"])
    assert read(real_runs / "debiaspl" / "why.json")["concepts"] is None


def test_the_demos_simulated_clip_keeps_features_and_gets_concept_analyses(simulated_demo):
    diagnosis = read(simulated_demo / "clip" / "why.json")
    assert len(diagnosis["concepts"]["gap"]["by_true"]) == 100
    assert "Concept mismatch: the 10 classes" in (simulated_demo / "report.md").read_text()


def test_histograms_mark_the_classes_clip_ca_found_mismatched(clip_out, monkeypatch):
    """Once clip-ca's alignment.json exists, clip's analysis marks its classes on the histograms,
    and clip-ca's marks its own and redraws clip's (analysed before clip-ca ran)."""
    marks, written = [], []
    draw = plotting.prediction_histogram
    monkeypatch.setattr(plotting, "prediction_histogram",
                        lambda *args, **options: marks.append(options["marked"]) or draw(*args, **options))
    monkeypatch.setattr(run_analysis, "write_figures", lambda figures, in_workers: written.extend(figures))
    clip = cache.load_predictions(clip_out / "clip" / "predictions.npz")
    run_analysis.analyze(clip, clip_out / "clip", clip_out)
    assert marks == [None, None]  # before clip-ca has run
    order = read(clip_out / "clip" / "metrics.json")["order"]
    write_json(clip_out / "clip-ca" / why.ALIGNMENT_FILE, {"mismatched": [{"wnid": order[4]}]})
    marks.clear()
    run_analysis.analyze(clip, clip_out / "clip", clip_out)
    assert marks == [(run_analysis.MISMATCH_LABEL, [4])] * 2
    figure = draw([3, 0], [0.5, 0.0], ["a", "b"], "recall", 1.5, title="t",
                  marked=(run_analysis.MISMATCH_LABEL, [1]))
    assert run_analysis.MISMATCH_LABEL in [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    marks.clear(), written.clear()
    clip.meta = {"model": "clip-ca", "clip": clip.meta}
    run_analysis.analyze(clip, clip_out / "clip-ca", clip_out)
    assert marks == [(run_analysis.MISMATCH_LABEL, [4])] * 2
    # One run's analysis writes its own folder only: clip's histograms are clip's analysis's.
    assert written and all(path.parent == clip_out / "clip-ca" for path in written)


def test_algorithm_1_runs_on_a_brought_cache_without_any_model(tmp_path):
    """A cache brought from elsewhere, with image and text features but no weights, analysed with
    no import of torch or open_clip: why.json gives every class Algorithm 1's verdict,
    finding the planted classes (those whose text embedding points away from their images,
    test_concepts.planted_run), and the recall histogram marks them. (That the whole torch-free
    side, Algorithm 1 included, imports no torch in a fresh interpreter: test_layout.)"""
    from conftest import imports_of, run_cli
    from test_concepts import LOGIT_SCALE, planted_run
    run = planted_run()
    wnids = np.array([f"class{k:02d}" for k in range(len(run.text_features))])
    cache.save_predictions(tmp_path / "brought" / "predictions.npz", cache.Predictions(
        logits=(LOGIT_SCALE * run.image_features @ run.text_features.T).astype(np.float32),
        labels=run.labels.astype(np.int64), paths=np.array([f"{i}.jpg" for i in range(len(run.labels))]),
        wnids=wnids, names=np.array([f"thing {k}" for k in range(len(wnids))]),
        meta={"model": "clip", "logit_scale": LOGIT_SCALE},
        image_features=run.image_features, text_features=run.text_features))
    with imports_of("torch", "open_clip") as asked_for:
        assert run_cli("--model", "clip", "--from-cache", "--run-name", "brought", "--out", tmp_path) == 0
    assert not asked_for, "a model library was imported"
    mismatch = read(tmp_path / "brought" / "why.json")["concepts"]["mismatch"]
    planted = sorted(wnids[run.planted].tolist())
    assert sorted(entry["wnid"] for entry in mismatch["mismatched"]) == planted
    assert sorted(entry["wnid"] for entry in mismatch["classes"] if entry["mismatched"]) == planted
    assert len(mismatch["classes"]) == len(wnids)
    marks = why.run_mismatches("clip", tmp_path / "brought", tmp_path, read(tmp_path / "brought" / "why.json"))
    assert marks == [entry["wnid"] for entry in mismatch["mismatched"]]
    assert sorted(marks) == planted
