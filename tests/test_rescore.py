"""--rescore: a CLIP run's cached image features re-predicted with new prompts and names, no image
read: the original prompts give back the original logits; new ones give what open_clip computes
by hand from the same weights on the cached features."""
import json
import shutil

import numpy as np
import pytest

from runs import cache
from conftest import SUBSET_WNIDS, run_cli
from runs.outputs import UserError

TEMPLATES = ["a blurry photo of a {c}.", "a sketch of the {c}."]
NAMES = [f"animal number {index}" for index in range(len(SUBSET_WNIDS))]


def relative_error(actual, expected):
    return np.abs(actual - expected).max() / np.abs(expected).max()


@pytest.fixture
def out(real_runs, tmp_path):
    shutil.copytree(real_runs / "clip", tmp_path / "clip")
    return tmp_path


def test_the_original_prompts_give_the_original_logits(out, demo_inputs):
    # No --data: a rescore reads no image (the generated folder is not where the default points).
    assert run_cli("--model", "clip", "--rescore", "clip", "--prompts", "single", "--out", out,
                   "--device", "cpu", "--clip-weights", demo_inputs.clip_weights) == 0
    original = cache.load_predictions(out / "clip" / "predictions.npz")
    rescored = cache.load_predictions(out / "clip-rescored" / "predictions.npz")
    assert relative_error(rescored.logits, original.logits) <= 1e-5
    assert rescored.meta["rescored_from"] == "clip" and rescored.meta["model"] == "clip"
    assert (out / "clip-rescored" / "metrics.json").is_file()
    assert json.loads((out / "clip-rescored" / "run.json").read_text())["model"] == "clip"


def test_new_prompts_and_names_are_open_clips_on_the_cached_features(out, demo_inputs):
    import open_clip
    import torch
    (out / "templates.txt").write_text("\n".join(TEMPLATES) + "\n")
    (out / "names.txt").write_text("\n".join(NAMES) + "\n")
    assert run_cli("--model", "clip", "--rescore", "clip", "--templates", out / "templates.txt",
                   "--class-names-file", out / "names.txt", "--run-name", "new-prompts",
                   "--out", out, "--device", "cpu") == 0
    rescored = cache.load_predictions(out / "new-prompts" / "predictions.npz")
    original = cache.load_predictions(out / "clip" / "predictions.npz")
    # By hand: open_clip's RN50 (QuickGELU, as OpenAI's) with the weights, each class's prompts
    # encoded, normalised, averaged and renormalised; logit_scale x cosine.
    model = open_clip.create_model("RN50-quickgelu").eval()
    model.load_state_dict(torch.load(demo_inputs.clip_weights, weights_only=True))
    tokenizer = open_clip.get_tokenizer("RN50")
    with torch.no_grad():
        text = []
        for name in NAMES:
            prompts = model.encode_text(tokenizer([t.replace("{c}", name) for t in TEMPLATES]))
            mean = (prompts / prompts.norm(dim=-1, keepdim=True)).mean(0)
            text.append((mean / mean.norm()).numpy())
        scale = model.logit_scale.exp().item()
    expected = scale * np.asarray(original.image_features, dtype=np.float64) @ np.array(text, dtype=np.float64).T
    assert relative_error(rescored.logits, expected) <= 1e-5
    assert rescored.names.tolist() == NAMES
    assert np.array_equal(rescored.image_features, original.image_features)
    assert rescored.meta["templates"] == TEMPLATES


def test_a_run_without_features_cannot_be_rescored(out):
    clip = cache.load_predictions(out / "clip" / "predictions.npz")
    clip.image_features = clip.text_features = None
    cache.save_predictions(out / "bare" / "predictions.npz", clip)
    from inference import rescore
    with pytest.raises(UserError, match="needs the image features of a CLIP run"):
        rescore.rescore("bare", out, out / "bare-rescored")
