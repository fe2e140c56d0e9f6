"""why.json and Figure 4's test: in every run's metrics.json and terminal text; the causes of
imbalance (concept gap, CAP's margin) where the cache keeps CLIP's features, a note where not."""
import json

import numpy as np

import cache
import concepts
import why
from conftest import SUBSET_WNIDS


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
