"""The real loading and inference code on random weights in the real file formats, checked
against independent computations with open_clip and torchvision, and the CLI end to end."""
import csv
import json

import numpy as np
import pytest
from PIL import Image

from runs import cache
from sources import classes
from inference import engine
from inference import models
from sources.folder import FolderSource
from conftest import PROJECT_DIR, RUN_FILES, SUBSET_WNIDS, run_cli
from oracles import open_clip_zero_shot_logits, preprocessed_images


def imagenet100_rows():
    with (PROJECT_DIR / "imagenet100.tsv").open(newline="") as table:
        return {row["wnid"]: row for row in csv.DictReader(table, delimiter="\t")}


def image_paths(val_dir):
    return [path for wnid in SUBSET_WNIDS for path in sorted((val_dir / wnid).iterdir())]


def load_npz(path):
    with np.load(path) as archive:
        return {key: archive[key] for key in archive.files}


def independent_clip_logits(weights, val_dir):
    """CLIP zero-shot with open_clip's own loader and transform, one prompt per class."""
    import open_clip
    model, _, preprocess = open_clip.create_model_and_transforms("RN50-quickgelu", pretrained=str(weights))
    names = [imagenet100_rows()[wnid]["clip_name"] for wnid in SUBSET_WNIDS]
    return open_clip_zero_shot_logits(model.eval(), open_clip.get_tokenizer("RN50-quickgelu"), names,
                                      ["a photo of a {c}."], preprocessed_images(preprocess, image_paths(val_dir)))


def independent_debiaspl_logits(checkpoint_path, val_dir, branch):
    """torchvision's resnet50 with the branch's weights, its own transforms, 1000 -> 6 columns."""
    import torch
    import torchvision
    from torchvision import transforms
    state_dict = torch.load(checkpoint_path, map_location="cpu", weights_only=False)["state_dict"]
    prefix = f"module.{branch}."
    weights = {key[len(prefix):].replace("backbone.", "", 1): value
               for key, value in state_dict.items() if key.startswith(prefix)}
    network = torchvision.models.resnet50()
    network.load_state_dict(weights)
    network.eval()
    transform = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
                                    transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    columns = [int(imagenet100_rows()[wnid]["imagenet1k_index"]) for wnid in SUBSET_WNIDS]
    with torch.no_grad():
        return network(preprocessed_images(transform, image_paths(val_dir)))[:, columns].numpy()


def assert_logits_close(actual, expected):
    # channels_last and batching change summation order: compare relative to the logit scale.
    scale = np.abs(expected).max()
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4 * scale)


def test_clip_logits_equal_independent_open_clip(real_runs, demo_inputs):
    cache = load_npz(real_runs / "clip" / "predictions.npz")
    expected = independent_clip_logits(demo_inputs.clip_weights, demo_inputs.data / "val")
    assert cache["logits"].dtype == np.float32 and cache["logits"].shape == (18, 6)
    assert_logits_close(cache["logits"], expected)


def test_clip_cache_keeps_features_whose_product_is_the_logits(real_runs):
    clip = cache.load_predictions(real_runs / "clip" / "predictions.npz")
    assert clip.image_features.shape == (18, 1024) and clip.text_features.shape == (6, 1024)
    np.testing.assert_allclose(np.linalg.norm(clip.image_features, axis=1), 1, rtol=1e-5)
    recomputed = clip.meta["logit_scale"] * clip.image_features @ clip.text_features.T
    assert_logits_close(clip.logits, recomputed)
    debiaspl = cache.load_predictions(real_runs / "debiaspl" / "predictions.npz")
    assert debiaspl.image_features is None and "logit_scale" not in debiaspl.meta


def test_debiaspl_logits_equal_torchvision_resnet50_main(real_runs, demo_inputs):
    cache = load_npz(real_runs / "debiaspl" / "predictions.npz")
    expected = independent_debiaspl_logits(demo_inputs.debiaspl_checkpoint, demo_inputs.data / "val", "main")
    assert_logits_close(cache["logits"], expected)


def test_debiaspl_ema_branch_with_loader_workers(tmp_path, real_runs, demo_inputs):
    out = tmp_path / "out"
    (out / "clip").mkdir(parents=True)
    (out / "clip" / "metrics.json").write_text((real_runs / "clip" / "metrics.json").read_text())
    assert run_cli("--model", "debiaspl", "--branch", "ema", "--checkpoint", demo_inputs.debiaspl_checkpoint,
                   "--data", demo_inputs.data / "val", "--out", out, "--device", "cpu",
                   "--workers", 2, "--batch-size", 5) == 0
    ema = load_npz(out / "debiaspl" / "predictions.npz")["logits"]
    val_dir = demo_inputs.data / "val"
    assert_logits_close(ema, independent_debiaspl_logits(demo_inputs.debiaspl_checkpoint, val_dir, "ema"))
    main = load_npz(real_runs / "debiaspl" / "predictions.npz")["logits"]  # the main branch's (test above)
    assert not np.allclose(ema, main)


def test_models_are_built_without_random_init_and_torch_init_comes_back():
    """The loaders skip the random draws their weights file overwrites (the logits tests above
    prove the loaded models right); torch.nn.init is whole again afterwards, even after an error."""
    import torch
    drawers = {name: getattr(torch.nn.init, name) for name in ("normal_", "kaiming_uniform_", "ones_")}
    with pytest.raises(RuntimeError, match="stop"):
        with models.without_random_init():
            assert torch.nn.init.normal_(torch.zeros(3)).eq(0).all()
            raise RuntimeError("stop")
    assert all(getattr(torch.nn.init, name) is drawer for name, drawer in drawers.items())
    assert not torch.nn.init.normal_(torch.zeros(3)).eq(0).all()


def test_predictions_cache_contract(real_runs, demo_inputs):
    for model in ("clip", "debiaspl"):
        cache = load_npz(real_runs / model / "predictions.npz")
        assert cache["labels"].dtype == np.int64
        assert cache["labels"].tolist() == [i for i in range(6) for _ in range(3)]
        assert cache["wnids"].tolist() == SUBSET_WNIDS
        rows = imagenet100_rows()
        assert cache["names"].tolist() == [rows[wnid]["clip_name"] for wnid in SUBSET_WNIDS]
        expected_paths = [str(p.relative_to(demo_inputs.data / "val")) for p in image_paths(demo_inputs.data / "val")]
        assert cache["paths"].tolist() == expected_paths
        for name in RUN_FILES:
            assert (real_runs / model / name).stat().st_size > 0


def test_metrics_json_contract_and_order_rule(real_runs):
    clip = json.loads((real_runs / "clip" / "metrics.json").read_text())
    debiaspl = json.loads((real_runs / "debiaspl" / "metrics.json").read_text())
    logits = load_npz(real_runs / "clip" / "predictions.npz")["logits"]
    counts = np.bincount(logits.argmax(1), minlength=6)
    expected_order = sorted(range(6), key=lambda i: (-counts[i], i))
    assert clip["own_order"] == [SUBSET_WNIDS[i] for i in expected_order]
    assert clip["order"] == clip["own_order"]
    assert debiaspl["order"] == clip["own_order"]  # Q2: keep Q1's order
    for summary in (clip, debiaspl):
        assert summary["num_images"] == 18
        assert [c["wnid"] for c in summary["classes"]] == SUBSET_WNIDS
        assert sum(c["predicted_count"] for c in summary["classes"]) == 18
        for entry in summary["classes"]:
            assert (entry["precision"] is None) == (entry["predicted_count"] == 0)
            assert entry["true_count"] == 3
        assert 0 <= summary["accuracy"] <= summary["top5_accuracy"] <= 1


def answered_ends(run_dir):
    """(most predicted, the class (c) answers as least predicted): the last in the run's order,
    or, when it was never predicted and another class was, the last that was predicted."""
    summary = json.loads((run_dir / "metrics.json").read_text())
    counts = {entry["wnid"]: entry["predicted_count"] for entry in summary["classes"]}
    predicted = [wnid for wnid in summary["own_order"] if counts[wnid]]
    least = summary["own_order"][-1]
    return summary["own_order"][0], predicted[-1] if not counts[least] and len(predicted) > 1 else least


def test_centroids_json_roles(real_runs):
    clip_ends, debiaspl_ends = answered_ends(real_runs / "clip"), answered_ends(real_runs / "debiaspl")
    clip = json.loads((real_runs / "clip" / "centroids.json").read_text())
    debiaspl = json.loads((real_runs / "debiaspl" / "centroids.json").read_text())
    for grouping in ("by_predicted", "by_true"):
        assert [(q["role"].split(" with ")[0], q["wnid"]) for q in clip[grouping]["queries"]][:2] == [
            ("most predicted", clip_ends[0]), ("least predicted", clip_ends[1])]
        assert [(q["role"].split(" with ")[0], q["wnid"]) for q in debiaspl[grouping]["queries"]][:4] == [
            ("most predicted", debiaspl_ends[0]), ("least predicted", debiaspl_ends[1]),
            ("most predicted by clip", clip_ends[0]), ("least predicted by clip", clip_ends[1])]
    for query in clip["by_true"]["queries"]:  # every class has images: 5 neighbours each
        cosines = [n["cosine"] for n in query["neighbors"]]
        assert len(cosines) == 5 and cosines == sorted(cosines, reverse=True)
        assert query["wnid"] not in [n["wnid"] for n in query["neighbors"]]


def test_debiaspl_without_clip_run_says_run_clip_first(tmp_path, demo_inputs, capsys):
    code = run_cli("--model", "debiaspl", "--checkpoint", demo_inputs.debiaspl_checkpoint,
                   "--data", demo_inputs.data, "--out", tmp_path, "--device", "cpu")
    assert code == 2
    assert "--model clip" in capsys.readouterr().err
    assert not (tmp_path / "debiaspl").exists()


def test_subset_of_imagenet100_warns(real_runs, demo_inputs, capsys):
    classes.warn_if_not_imagenet100(SUBSET_WNIDS)
    assert "not the standard ImageNet100" in capsys.readouterr().err
    classes.warn_if_not_imagenet100(list(imagenet100_rows()))
    assert capsys.readouterr().err == ""


def test_data_root_or_val_folder(demo_inputs):
    assert classes.resolve_split_dir(demo_inputs.data) == ("val", demo_inputs.data / "val")
    assert classes.resolve_split_dir(demo_inputs.data / "val") == ("val", demo_inputs.data / "val")


def test_all_imagenet1k_wnids_are_described():
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES
    indices, names = classes.describe_classes(classes.imagenet1k_wnids())
    assert indices == list(range(1000)) and names == list(IMAGENET_CLASSNAMES)


def test_prompt_templates():
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES
    assert models.clip_prompt_templates("ensemble") == tuple(t("{c}") for t in OPENAI_IMAGENET_TEMPLATES)
    assert len(OPENAI_IMAGENET_TEMPLATES) == 80
    assert models.clip_prompt_templates("single") == ("a photo of a {c}.",)


def test_openai_torchscript_weights_load_like_a_state_dict(tmp_path, demo_inputs):
    import open_clip
    import torch
    scripted = open_clip.create_model("RN50-quickgelu", jit=True)
    scripted.load_state_dict(torch.load(demo_inputs.clip_weights, weights_only=True), strict=False)
    scripted.save(str(tmp_path / "RN50.pt"))
    model, _ = models.load_clip_weights("RN50", str(tmp_path / "RN50.pt"))
    expected = torch.load(demo_inputs.clip_weights, weights_only=True)
    for key, value in model.state_dict().items():
        assert torch.equal(value, expected[key]), key


def test_odd_image_files_load_as_rgb(demo_inputs):
    first_class = sorted((demo_inputs.data / "val" / SUBSET_WNIDS[0]).iterdir())
    assert [Image.open(p).mode for p in first_class] == ["L", "CMYK", "RGB"]
    assert Image.open(first_class[2]).format == "PNG"
    source = FolderSource(demo_inputs.data / "val")  # its first 3 samples: the first class's
    assert all(engine.load_rgb(source, index).mode == "RGB" for index in range(3))
