"""The open set of runs: folder names, titles, the homework's question labels and run.json, and
finding every run in OUT. Pure functions of the meta: no torch, no files but tmp_path."""
import json

import numpy as np
import pytest

from runs import cache
from conftest import synthetic_predictions
from runs.descriptors import (NO_META, RUN_FILE, default_run_name, descriptor, find_runs, is_known_clip,
                  model_title, question_of, write_descriptor)

VIT = {"model": "clip", "architecture": "ViT-B-32", "weights": "openai", "dataset": "resisc45"}


@pytest.mark.parametrize("arguments, name", [
    (("clip", "RN50", "openai", None), "clip"),
    (("clip", "RN50", "/weights/RN50.pt", None), "clip"),
    (("clip", "ViT-B-32", "openai", None), "clip-ViT-B-32-openai"),
    (("clip", "ViT-B-32", "/w/my weights.safetensors", None), "clip-ViT-B-32-my-weights"),
    (("clip", "RN50", "openai", "resisc45"), "resisc45-clip"),
    (("debiaspl", None, "x.pth.tar", None), "debiaspl"),
])
def test_default_run_names(arguments, name):
    assert default_run_name(*arguments) == name


def test_training_free_runs_are_named_by_their_source():
    assert default_run_name("clip-la") == "clip-la"
    assert default_run_name("clip-pm", source="clip-ViT-B-32-openai") == "clip-ViT-B-32-openai-pm"


@pytest.mark.parametrize("meta, title", [
    ({"model": "clip", "dataset": "ImageNet100"}, "CLIP RN50 zero-shot"),
    ({"model": "clip", "dataset": "data"}, "CLIP RN50 zero-shot on data"),
    (VIT, "CLIP ViT-B-32 (openai) zero-shot on resisc45"),
    ({"model": "clip-pm", "source_run": "x", "source_meta": VIT},
     "CLIP ViT-B-32 (openai) zero-shot + prior matching on resisc45"),
    ({"model": "clip-la", "clip": {"model": "clip", "simulated": True}},
     "SIMULATED CLIP RN50 + logit adjustment"),  # a cache from before --source
    ({"model": "clip", "provenance": NO_META}, "clip"),
    ({"model": "my-fish-run", "provenance": NO_META}, "my-fish-run"),
    ({"model": "debiaspl", "split": "train", "title_note": "epoch 30"},
     "DebiasPL (zero-shot, RN50) (epoch 30), train split"),
])
def test_titles_name_model_weights_and_dataset(meta, title):
    assert model_title(meta) == title


def test_only_the_homeworks_runs_answer_its_questions():
    assert question_of("clip", {"model": "clip"}) == "Q1"
    assert question_of("clip", {"model": "clip", "provenance": NO_META}) == "Q1"  # brought for Q1
    assert question_of("debiaspl", {"model": "debiaspl"}) == "Q2"
    assert question_of("clip-ViT-B-32-openai", VIT) is None
    assert question_of("clip", VIT) is None  # --run-name clip on another model
    assert question_of("clip-la", {"model": "clip-la"}) is None


def test_clip_specific_text_only_for_runs_known_to_be_clip():
    assert is_known_clip({"model": "clip"}) and is_known_clip(VIT)
    assert is_known_clip({"model": "clip-pm", "source_meta": VIT})
    assert not is_known_clip({"model": "clip", "provenance": NO_META})
    assert not is_known_clip({"model": "debiaspl"})
    assert not is_known_clip({"model": "clip-pm", "source_meta": {"model": "debiaspl"}})


def test_find_runs_reads_descriptors_and_describes_folders_without_one(tmp_path):
    write_descriptor(tmp_path / "clip-ViT-B-32-openai", VIT)
    write_descriptor(tmp_path / "debiaspl", {"model": "debiaspl", "dataset": "ImageNet100"})
    write_descriptor(tmp_path / "clip", {"model": "clip", "dataset": "ImageNet100"})
    brought = synthetic_predictions("fish", 0)
    np.savez(tmp_path / "fish.npz", **{key: getattr(brought, key) for key in cache.REQUIRED_KEYS})
    (tmp_path / "fish").mkdir()
    (tmp_path / "fish.npz").rename(tmp_path / "fish" / "predictions.npz")
    (tmp_path / "not-a-run").mkdir()
    found = find_runs(tmp_path)
    assert list(found) == ["clip", "debiaspl", "fish", "clip-ViT-B-32-openai"]
    assert found["fish"]["title"] == "fish" and found["fish"]["kind"] is None
    assert found["debiaspl"]["order_reference"] == "clip" and found["debiaspl"]["question"] == "Q2"
    assert json.loads((tmp_path / "clip" / RUN_FILE).read_text()) == descriptor(
        "clip", {"model": "clip", "dataset": "ImageNet100"})
