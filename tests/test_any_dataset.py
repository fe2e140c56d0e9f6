"""Beyond RN50 and ImageNet, through the command line: a random ViT-B-32 saved as a state dict, on
a small dataset whose classes are not ImageNet's (its own classnames.txt and templates file),
into its own run folder with its descriptor; clip-pm on that run with --source; and the
sentences that stop a wrong setup."""
import json

import numpy as np
import pytest
import torch

from runs import cache
from demo import synthetic
from conftest import run_cli
from runs.descriptors import RUN_FILE, find_runs

CLASS_FOLDERS = ["annual_crop", "forest", "herbaceous-vegetation"]
CLASS_NAMES = ["annual crop land", "forest", "herbaceous vegetation"]
TEMPLATES = ["a satellite photo of {c}.", "an aerial view of {c}."]
DATASET = "mini-eurosat"


@pytest.fixture(scope="module")
def vit_run(tmp_path_factory):
    """(OUT, data root, weights file, the model) after `--model clip --clip-model ViT-B-32` on a
    3-class non-ImageNet folder with classnames.txt and a templates file."""
    import open_clip
    folder = tmp_path_factory.mktemp("any-dataset")
    root = folder / DATASET
    synthetic.write_image_folder(root / "val", CLASS_FOLDERS, images_per_class=2, seed=3)
    (root / "classnames.txt").write_text("\n".join(CLASS_NAMES) + "\n")
    (root / "zeroshot_classification_templates.txt").write_text("\n".join(TEMPLATES) + "\n")
    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32", pretrained=None).eval()
    weights = folder / "vit-b-32-random.pt"
    torch.save(model.state_dict(), weights)
    out = folder / "out"
    assert run_cli("--model", "clip", "--clip-model", "ViT-B-32", "--clip-weights", weights,
                   "--data", root, "--out", out, "--device", "cpu", "--batch-size", 4,
                   "--workers", 0) == 0
    return out, root, weights, model


def run_id():
    return f"{DATASET}-clip-ViT-B-32-vit-b-32-random"


def independent_logits(model, root, paths):
    """open_clip by hand: the model's own preprocessing, unit image features, each class's
    prompts (from the files) encoded, normalised, averaged and renormalised, logit_scale x cosine."""
    import open_clip
    from PIL import Image
    _, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32", pretrained=None)
    tokenizer = open_clip.get_tokenizer("ViT-B-32")
    with torch.no_grad():
        text = []
        for name in CLASS_NAMES:
            prompts = model.encode_text(tokenizer([template.replace("{c}", name) for template in TEMPLATES]))
            mean = (prompts / prompts.norm(dim=-1, keepdim=True)).mean(0)
            text.append(mean / mean.norm())
        images = torch.stack([preprocess(Image.open(root / "val" / path).convert("RGB")) for path in paths])
        features = model.encode_image(images)
        features = features / features.norm(dim=-1, keepdim=True)
        return (model.logit_scale.exp() * features @ torch.stack(text).T).numpy()


def test_vit_b_32_on_a_non_imagenet_folder_equals_open_clip(vit_run):
    out, root, _, model = vit_run
    predictions = cache.load_predictions(out / run_id() / "predictions.npz")
    assert list(predictions.wnids) == CLASS_FOLDERS and list(predictions.names) == CLASS_NAMES
    expected = independent_logits(model, root, predictions.paths)
    np.testing.assert_allclose(predictions.logits, expected, rtol=1e-5,
                               atol=1e-5 * np.abs(expected).max())
    meta = predictions.meta
    assert meta["architecture"] == "ViT-B-32" and meta["dataset"] == DATASET
    assert meta["templates"] == TEMPLATES
    assert meta["names_source"] == str(root / "classnames.txt")


def test_the_run_has_its_own_folder_and_descriptor(vit_run):
    out = vit_run[0]
    assert not (out / "clip").exists()  # the homework's Q1 folder is never written by another CLIP
    descriptor = json.loads((out / run_id() / RUN_FILE).read_text())
    assert descriptor["kind"] == "zero-shot CLIP" and descriptor["clip"] is True
    assert descriptor["title"] == "CLIP ViT-B-32 (vit-b-32-random.pt) zero-shot on mini-eurosat"
    assert descriptor["question"] is None and descriptor["order_reference"] is None
    metrics = json.loads((out / run_id() / "metrics.json").read_text())
    assert metrics["num_images"] == 6 and [c["name"] for c in metrics["classes"]] != []


def test_prior_matching_on_a_named_source_run(vit_run):
    out = vit_run[0]
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


def test_from_cache_finds_the_run_by_its_name(vit_run, capsys, monkeypatch):
    out = vit_run[0]
    monkeypatch.delenv("IMAGENET100_ROOT", raising=False)
    capsys.readouterr()
    assert run_cli("--model", "clip", "--from-cache", "--out", out) == 2
    assert f"pass --run-name {run_id()}." in capsys.readouterr().err
    assert run_cli("--model", "clip", "--from-cache", "--out", out, "--run-name", run_id()) == 0
    assert "CLIP ViT-B-32" in (out / run_id() / "run.json").read_text()
