"""Beyond RN50 and ImageNet, through the command line: a random ViT-B-32 saved as a state dict, on
a small dataset whose classes are not ImageNet's (its own classnames.txt and templates file),
into its own run folder with its descriptor; clip-pm on that run with --source; and the
sentences that stop a wrong setup."""
import json
import shutil

import numpy as np
import pytest

from runs import cache
from demo import synthetic
from conftest import run_cli
from runs.descriptors import RUN_FILE, find_runs
from oracles import open_clip_zero_shot_logits, preprocessed_images

CLASS_FOLDERS = ["annual_crop", "forest", "herbaceous-vegetation"]
CLASS_NAMES = ["annual crop land", "forest", "herbaceous vegetation"]
TEMPLATES = ["a satellite photo of {c}.", "an aerial view of {c}."]
DATASET = "mini-eurosat"


@pytest.fixture(scope="module")
def vit_run(tmp_path_factory, vit_b_32, read_only_folders):
    """(OUT, data root, weights file, the model) after `--model clip --clip-model ViT-B-32` with
    a training checkpoint of a random ViT-B-32 on a 3-class non-ImageNet folder with
    classnames.txt and a templates file."""
    model, files = vit_b_32
    folder = tmp_path_factory.mktemp("any-dataset")
    root = folder / DATASET
    synthetic.write_image_folder(root / "val", CLASS_FOLDERS, images_per_class=2, seed=3)
    (root / "classnames.txt").write_text("\n".join(CLASS_NAMES) + "\n")
    (root / "zeroshot_classification_templates.txt").write_text("\n".join(TEMPLATES) + "\n")
    out = folder / "out"
    assert run_cli("--model", "clip", "--clip-model", "ViT-B-32", "--clip-weights", files["pt"],
                   "--data", root, "--out", out, "--device", "cpu", "--batch-size", 4,
                   "--workers", 0) == 0
    read_only_folders.register(folder)
    return out, root, files["pt"], model


@pytest.fixture
def vit_out(vit_run, tmp_path):
    """A copy of vit_run's OUT, for a test that writes into it."""
    shutil.copytree(vit_run[0], tmp_path / "out")
    return tmp_path / "out"


def run_id():
    return f"{DATASET}-clip-ViT-B-32-vit-b-32-random"


def test_vit_b_32_checkpoint_on_a_non_imagenet_folder_equals_open_clip_by_hand(vit_run):
    import open_clip
    out, root, weights, model = vit_run
    predictions = cache.load_predictions(out / run_id() / "predictions.npz")
    assert list(predictions.wnids) == CLASS_FOLDERS and list(predictions.names) == CLASS_NAMES
    _, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32", pretrained=None)
    expected = open_clip_zero_shot_logits(model, open_clip.get_tokenizer("ViT-B-32"), CLASS_NAMES, TEMPLATES,
                                          preprocessed_images(preprocess, [root / "val" / path
                                                                           for path in predictions.paths]))
    np.testing.assert_allclose(predictions.logits, expected, rtol=1e-5,
                               atol=1e-5 * np.abs(expected).max())
    meta = predictions.meta
    assert meta["architecture"] == "ViT-B-32" and meta["dataset"] == DATASET
    assert meta["templates"] == TEMPLATES
    assert meta["names_source"] == str(root / "classnames.txt")
    assert meta["weights_identity"]["bytes"] == weights.stat().st_size


def test_the_run_has_its_own_folder_and_descriptor(vit_run):
    out = vit_run[0]
    assert not (out / "clip").exists()  # the homework's Q1 folder is never written by another CLIP
    descriptor = json.loads((out / run_id() / RUN_FILE).read_text())
    assert descriptor["kind"] == "zero-shot CLIP" and descriptor["clip"] is True
    assert descriptor["title"] == "CLIP ViT-B-32 (vit-b-32-random.pt) zero-shot on mini-eurosat"
    assert descriptor["question"] is None and descriptor["order_reference"] is None
    metrics = json.loads((out / run_id() / "metrics.json").read_text())
    assert metrics["num_images"] == 6
    assert [(c["wnid"], c["name"]) for c in metrics["classes"]] == list(zip(CLASS_FOLDERS, CLASS_NAMES))


def test_prior_matching_on_a_named_source_run(vit_out):
    out = vit_out
    assert run_cli("--model", "clip-pm", "--source", run_id(), "--out", out) == 0
    derived = json.loads((out / f"{run_id()}-pm" / RUN_FILE).read_text())
    assert derived["source"] == run_id() and derived["order_reference"] == run_id()
    assert derived["title"] == ("CLIP ViT-B-32 (vit-b-32-random.pt) zero-shot + prior matching "
                                "on mini-eurosat")
    assert list(find_runs(out)) == [run_id(), f"{run_id()}-pm"]


@pytest.mark.parametrize("options, fragments", [
    (["--model", "debiaspl"], ["--model debiaspl predicts ImageNet-1k's 1,000 classes",
                               "annual_crop", "run --model clip on this dataset instead"]),
    (["--model", "clip", "--clip-model", "ViT-B-23"], ["--clip-model ViT-B-23 is not one of",
                                                       "ViT-B-32"]),
    (["--model", "clip-pm", "--source", "clip-ViT-B-32-x"], ["pass --source with one of"]),
])
def test_a_wrong_setup_is_one_sentence(vit_run, capsys, options, fragments):
    out, root, _, _ = vit_run
    capsys.readouterr()
    assert run_cli(*options, "--data", root, "--out", out, "--device", "cpu") == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "Traceback" not in error, error
    for fragment in fragments:
        assert fragment in error, error


def test_from_cache_finds_the_run_by_its_name(vit_out, capsys, monkeypatch):
    out = vit_out
    monkeypatch.delenv("IMAGENET100_ROOT", raising=False)
    capsys.readouterr()
    assert run_cli("--model", "clip", "--from-cache", "--out", out) == 2
    assert f"pass --run-name {run_id()}." in capsys.readouterr().err
    assert run_cli("--model", "clip", "--from-cache", "--out", out, "--run-name", run_id()) == 0
    assert "CLIP ViT-B-32" in (out / run_id() / "run.json").read_text()
