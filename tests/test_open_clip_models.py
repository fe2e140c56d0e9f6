"""Any open_clip CLIP as the zero-shot model: a random ViT-B-32 saved in the file formats users
bring, checked against an independent open_clip computation, and the early checks of
--clip-model / --clip-weights. Nothing is downloaded: every model has random weights."""
import numpy as np
import pytest
import torch

from inference import models
from runs.outputs import UserError

TEMPLATES = ("a photo of a {c}.", "a {c} in a satellite image.")
CLASS_NAMES = ["annual crop", "forest"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These tests compare numbers, not speed; on a busy machine torch's threads wait on each
    other (a ViT-B-32 forward: 0.5 s on one thread, 3.5 s on two of a loaded 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def vit_b_32():
    """A seeded random ViT-B-32 (open_clip's config: GELU) in eval mode."""
    import open_clip
    torch.manual_seed(0)
    return open_clip.create_model("ViT-B-32", pretrained=None).eval()


@pytest.fixture(scope="module")
def vit_b_32_files(vit_b_32, tmp_path_factory):
    """Its weights as a training checkpoint ({"state_dict": ...}, DataParallel's "module."
    prefixes) and as a .safetensors file."""
    from safetensors.torch import save_file
    folder = tmp_path_factory.mktemp("vit-b-32")
    state_dict = vit_b_32.state_dict()
    torch.save({"epoch": 3, "state_dict": {f"module.{key}": value for key, value in state_dict.items()}},
               folder / "checkpoint.pt")
    save_file(state_dict, folder / "weights.safetensors")
    return {"pt": folder / "checkpoint.pt", "safetensors": folder / "weights.safetensors"}


@pytest.fixture(scope="module")
def images():
    return torch.randn(3, 3, 224, 224, generator=torch.Generator().manual_seed(1))


def independent_zero_shot_logits(model, images):
    """logit_scale.exp() x cosine of the unit image features and, per class, the renormalised
    mean of its unit prompt embeddings."""
    import open_clip
    tokenizer = open_clip.get_tokenizer("ViT-B-32")
    with torch.no_grad():
        classes = []
        for name in CLASS_NAMES:
            prompts = model.encode_text(tokenizer([f"a photo of a {name}.",
                                                   f"a {name} in a satellite image."]))
            prompts = prompts / prompts.norm(dim=-1, keepdim=True)
            mean = prompts.mean(0)
            classes.append(mean / mean.norm())
        features = model.encode_image(images)
        features = features / features.norm(dim=-1, keepdim=True)
        return (model.logit_scale.exp() * features @ torch.stack(classes).T).numpy()


def assert_one_sentence(error, *fragments):
    message = str(error.value)
    assert message.endswith(".") and ". " not in message and "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_vit_b_32_checkpoint_gives_the_logits_of_an_independent_open_clip(
        vit_b_32, vit_b_32_files, images, tmp_path):
    import open_clip
    from open_clip.transform import PreprocessCfg, image_transform_v2
    weights = str(vit_b_32_files["pt"])
    models.check_clip_choice("ViT-B-32", weights)
    module, transform, identity = models.build_clip_zero_shot(
        "ViT-B-32", weights, TEMPLATES, CLASS_NAMES, torch.device("cpu"), "fp32", tmp_path)
    with torch.no_grad():
        logits = module.eval()(images).numpy()
    expected = independent_zero_shot_logits(vit_b_32, images)
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
    own_preprocess = PreprocessCfg(**open_clip.get_model_preprocess_cfg(vit_b_32))
    assert str(transform) == str(image_transform_v2(own_preprocess, is_train=False))
    assert identity["architecture"] == "ViT-B-32"
    assert identity["bytes"] == vit_b_32_files["pt"].stat().st_size


def test_vit_b_32_safetensors_reads_as_its_state_dict(vit_b_32, vit_b_32_files):
    """The rest of the way is the checkpoint's, above: only the reading differs."""
    weights = str(vit_b_32_files["safetensors"])
    models.check_clip_choice("ViT-B-32", weights)
    state_dict = models.read_clip_state_dict(weights)
    expected = vit_b_32.state_dict()
    assert state_dict.keys() == expected.keys()
    assert all(torch.equal(state_dict[key], value) for key, value in expected.items())


def test_quick_gelu_follows_how_the_weights_were_trained():
    assert models.uses_quick_gelu("RN50", "openai", is_tag=True)  # open_clip 3 would build GELU
    assert models.uses_quick_gelu("ViT-B-32", "openai", is_tag=True)
    assert not models.uses_quick_gelu("ViT-B-32", "laion2b_s34b_b79k", is_tag=True)
    # State dict files: RN50's weights were all trained with QuickGELU, ViT-B-32's not all.
    assert models.uses_quick_gelu("RN50", "rn50.pt", is_tag=False)
    assert not models.uses_quick_gelu("ViT-B-32", "vit.pt", is_tag=False)


def test_unknown_architecture_names_close_valid_ones():
    with pytest.raises(UserError) as error:
        models.check_clip_choice("ViT-B32", "openai")
    assert_one_sentence(error, "--clip-model ViT-B32", "ViT-B-32")


def test_unknown_tag_names_the_valid_tags():
    with pytest.raises(UserError) as error:
        models.check_clip_choice("ViT-B-32", "laion9")
    assert_one_sentence(error, "--clip-weights laion9", "--clip-model ViT-B-32", "openai",
                        "laion2b_s34b_b79k")


def test_missing_weights_file_is_named(tmp_path):
    with pytest.raises(UserError) as error:
        models.check_clip_choice("RN50", str(tmp_path / "RN50.pt"))
    assert_one_sentence(error, f"--clip-weights {tmp_path / 'RN50.pt'} does not exist", "openai")


def test_rn50_weights_given_as_vit_b_32_name_the_differing_keys_and_shapes(tmp_path):
    rn50, _ = models.build_unloaded_clip("RN50", quick_gelu=True)  # only its shapes matter
    torch.save(rn50.state_dict(), tmp_path / "rn50.pt")
    with pytest.raises(UserError) as error:
        models.check_clip_choice("ViT-B-32", str(tmp_path / "rn50.pt"))
    message = assert_one_sentence(error, "does not fit CLIP ViT-B-32", "missing keys: visual.class_embedding",
                                  "unexpected keys: visual.bn1.weight", "shapes differ:", "more",
                                  "pass the --clip-model it was saved from")
    assert " vs " in message.split("shapes differ:")[1]


def test_text_classifier_cache_differs_between_architectures(tmp_path):
    def path(architecture, identity):
        return models.text_classifier_path(tmp_path, architecture, identity, TEMPLATES, CLASS_NAMES, "fp32")
    architectures = ("RN50", "ViT-B-32", "ViT-B-16")
    assert len({path(name, models.clip_weights_identity(name, "openai")) for name in architectures}) == 3
    assert len({path(name, {"tag": "openai"}) for name in architectures}) == 3  # the key names it too
