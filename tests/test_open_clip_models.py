"""Any open_clip CLIP as the zero-shot model: a random ViT-B-32 saved in the file formats users
bring (its logits against open_clip by hand: test_any_dataset), and the early checks of
--clip-model / --clip-weights. Nothing is downloaded: every model has random weights."""
import pytest

from inference import checkpoints, models
from runs.outputs import UserError

TEMPLATES = ("a photo of a {c}.", "a {c} in a satellite image.")
CLASS_NAMES = ["annual crop", "forest"]


def assert_one_sentence(error, *fragments):
    message = str(error.value)
    assert message.endswith(".") and ". " not in message and "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


@pytest.mark.parametrize("file_format", ["pt", "safetensors"])
def test_vit_b_32_files_read_as_its_state_dict(vit_b_32, file_format):
    """A training checkpoint ("module." prefixes) and a .safetensors file; the rest of the way,
    to the logits, is test_any_dataset's run of the checkpoint against open_clip by hand."""
    import torch
    model, files = vit_b_32
    weights = str(files[file_format])
    models.check_clip_choice("ViT-B-32", weights)
    state_dict = checkpoints.read_clip_state_dict(weights)
    expected = model.state_dict()
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
    import torch
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
