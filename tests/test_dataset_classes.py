"""dataset_classes: any image folder's class names and prompt templates, from CLIP_benchmark's
classnames.txt and zeroshot_classification_templates.txt, the ImageNet tables, or the folder names."""
import sys
import types

import pytest

from sources import classes
from conftest import SUBSET_WNIDS
from runs.outputs import UserError

FOLDERS = ["annual_crop", "forest", "herbaceous-vegetation"]
NAMES = ["annual crop land", "forest", "herbaceous vegetation land"]
TEMPLATES = ["a centered satellite photo of {c}.", "a satellite photo of the {c}."]
# Stands in for open_clip's module (importing open_clip imports torch: seconds); the real one is
# checked in tests/test_classes.py.
STUB_TEMPLATES = (lambda c: f"a bad photo of a {c}.", lambda c: f"a photo of many {c}.")


@pytest.fixture(autouse=True)
def stub_open_clip_templates(monkeypatch):
    monkeypatch.setitem(sys.modules, "open_clip.zero_shot_metadata",
                        types.SimpleNamespace(OPENAI_IMAGENET_TEMPLATES=STUB_TEMPLATES))


def class_folders(folder, names=FOLDERS):
    for name in names:
        (folder / name).mkdir(parents=True)
    return folder


def write_lines(path, lines):
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


def error_of(split_dir, **options):
    with pytest.raises(UserError) as raised:
        classes.dataset_classes(split_dir, **options)
    return str(raised.value)


def test_folder_names_and_single_prompt_without_files(tmp_path):
    found = classes.dataset_classes(class_folders(tmp_path / "eurosat"))
    assert found == classes.DatasetClasses(
        folders=tuple(FOLDERS), names=("annual crop", "forest", "herbaceous vegetation"),
        names_source="the folder names", imagenet_indices=None, templates=("a photo of a {c}.",),
        templates_source="'a photo of a {c}.'", dataset="eurosat")


def test_root_files_for_a_val_split(tmp_path):
    root = tmp_path / "eurosat"
    class_folders(root / "val")
    names_file = write_lines(root / "classnames.txt", NAMES)
    templates_file = write_lines(root / "zeroshot_classification_templates.txt", TEMPLATES)
    split, split_dir = classes.resolve_split_dir(root)
    # --data ROOT and --data ROOT/val find the same files.
    for found in (classes.dataset_classes(split_dir), classes.dataset_classes(root / "val")):
        assert (found.names, found.names_source) == (tuple(NAMES), str(names_file))
        assert (found.templates, found.templates_source) == (tuple(TEMPLATES), str(templates_file))
        assert found.dataset == "eurosat" and found.folders == tuple(FOLDERS)


def test_files_beside_the_class_folders(tmp_path):
    flat = class_folders(tmp_path / "eurosat")
    write_lines(flat / "classnames.txt", NAMES)
    assert classes.dataset_classes(flat).names == tuple(NAMES)


def test_the_splits_own_file_wins_over_the_roots(tmp_path):
    root = tmp_path / "eurosat"
    class_folders(root / "val")
    write_lines(root / "classnames.txt", NAMES)
    own = write_lines(root / "val" / "classnames.txt", ["crops", "woods", "meadow"])
    found = classes.dataset_classes(root / "val")
    assert (found.names, found.names_source) == (("crops", "woods", "meadow"), str(own))


def test_class_names_file_wins_over_classnames_txt(tmp_path):
    flat = class_folders(tmp_path / "eurosat")
    write_lines(flat / "classnames.txt", NAMES)
    mine = write_lines(tmp_path / "mine.txt", ["crops", "woods", "meadow"])
    found = classes.dataset_classes(flat, class_names_file=mine)
    assert (found.names, found.names_source) == (("crops", "woods", "meadow"), str(mine))


def test_templates_file_option_and_single_prompt(tmp_path):
    flat = class_folders(tmp_path / "eurosat")
    write_lines(flat / "zeroshot_classification_templates.txt", TEMPLATES)
    mine = write_lines(tmp_path / "mine.txt", ["an aerial view of {c}"])
    assert classes.dataset_classes(flat, templates_file=mine).templates == ("an aerial view of {c}",)
    single = classes.dataset_classes(flat, prompts="single")
    assert (single.templates, single.templates_source) == (("a photo of a {c}.",), "'a photo of a {c}.'")
    assert "--templates" in error_of(flat, prompts="single", templates_file=mine)
    assert classes.dataset_classes(flat, prompts=None).templates == ()  # debiaspl: no prompts


def test_a_run_without_prompts_needs_no_open_clip(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "open_clip.zero_shot_metadata", None)  # import fails
    found = classes.dataset_classes(class_folders(tmp_path / "subset", SUBSET_WNIDS), prompts=None)
    assert found.templates == () and len(found.imagenet_indices) == 6


def test_imagenet_wnids_keep_the_tables_and_openai_templates(tmp_path):
    split_dir = class_folders(tmp_path / "subset" / "val", SUBSET_WNIDS)
    table = classes.imagenet1k_table()
    found = classes.dataset_classes(split_dir)
    assert found.names == tuple(table[wnid]["clip_name"] for wnid in SUBSET_WNIDS)
    assert found.names_source == "CLIP's curated ImageNet names"
    assert found.imagenet_indices == tuple(int(table[wnid]["imagenet1k_index"]) for wnid in SUBSET_WNIDS)
    assert found.templates == ("a bad photo of a {c}.", "a photo of many {c}.")
    assert found.templates_source == "OpenAI's 80 ImageNet templates"
    assert found.dataset == "subset"
    wordnet = classes.dataset_classes(split_dir, class_names="wordnet")
    assert wordnet.names == tuple(classes.describe_classes(SUBSET_WNIDS, "wordnet")[1])
    # A names file renames ImageNet's classes; they stay ImageNet's, indices and templates.
    write_lines(tmp_path / "subset" / "classnames.txt", [f"class {i}" for i in range(6)])
    renamed = classes.dataset_classes(split_dir)
    assert renamed.names[0] == "class 0" and renamed.imagenet_indices == found.imagenet_indices
    assert renamed.templates == found.templates


def test_standard_imagenet_names(tmp_path):
    imagenet100 = [row["wnid"] for row in classes.read_imagenet100_table()]
    assert classes.dataset_classes(class_folders(tmp_path / "in100", imagenet100)).dataset == "ImageNet100"
    assert classes.standard_imagenet_name(classes.imagenet1k_wnids()) == "ImageNet-1k"
    assert classes.standard_imagenet_name(SUBSET_WNIDS) is None


def test_wnid_folders_that_no_table_names(tmp_path):
    mixed = class_folders(tmp_path / "mixed", SUBSET_WNIDS + ["cats"])
    message = error_of(mixed)
    assert "'cats' is not an ImageNet-1k wnid" in message and "classnames.txt" in message
    write_lines(mixed / "classnames.txt", [f"class {i}" for i in range(7)])
    assert classes.dataset_classes(mixed).imagenet_indices is None


def test_folder_names_that_read_alike(tmp_path):
    message = error_of(class_folders(tmp_path / "data", ["annual_crop", "Annual-Crop"]))
    assert "'Annual-Crop' and 'annual_crop'" in message and "--class-names-file" in message


@pytest.mark.parametrize("file_name, lines, fragments", [
    ("classnames.txt", ["crops", "forest"], ["has 2 names", "has 3 class folders", "line 3 would name "
                                             "the folder 'herbaceous-vegetation'", "sorted order"]),
    ("classnames.txt", NAMES + ["desert"], ["has 4 names", "line 4 ('desert') has no folder"]),
    ("classnames.txt", [], ["has 0 names"]),
    ("zeroshot_classification_templates.txt", ["a photo of {c}.", "a photo of {}."],
     ["line 2", "('a photo of {}.') has no {c}"]),
    ("zeroshot_classification_templates.txt", ["a photo of {c}.", "", "{c}"], ["line 2", "is blank"]),
    ("zeroshot_classification_templates.txt", ["", ""], ["holds no templates"]),
])
def test_bad_files(tmp_path, file_name, lines, fragments):
    flat = class_folders(tmp_path / "eurosat")
    path = write_lines(flat / file_name, lines)
    message = error_of(flat)
    assert str(path) in message and message.endswith(".") and message.count("; ") == 1, message
    for fragment in fragments:
        assert fragment in message, message


def test_unreadable_files(tmp_path):
    flat = class_folders(tmp_path / "eurosat")
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes(b"annual crop\nfor\xeat\nherbaceous\n")
    assert error_of(flat, class_names_file=latin1).startswith(
        f"line 2 of the class-names file {latin1} is not UTF-8")
    missing = tmp_path / "nowhere.txt"
    assert error_of(flat, class_names_file=missing) == f"the class-names file {missing} does not exist."
    assert f"cannot read the templates file {flat}" in error_of(flat, templates_file=flat)


def test_trailing_blank_lines_crlf_and_bom_are_fine(tmp_path):
    flat = class_folders(tmp_path / "eurosat")
    (flat / "classnames.txt").write_bytes(b"\xef\xbb\xbfannual crop\r\n forest \r\nherbaceous\r\n\r\n\n")
    assert classes.dataset_classes(flat).names == ("annual crop", "forest", "herbaceous")


def test_subset_warning_only_for_imagenet_subsets(capsys):
    assert "not the standard ImageNet100" in classes.subset_warning(SUBSET_WNIDS)
    imagenet100 = [row["wnid"] for row in classes.read_imagenet100_table()]
    for wnids in (imagenet100, classes.imagenet1k_wnids(), FOLDERS):
        assert classes.subset_warning(wnids) is None
        classes.warn_if_not_imagenet100(wnids)
    assert capsys.readouterr().err == ""


def test_labels_and_prompts():
    assert classes.class_folder_label("herbaceous-vegetation__2") == "herbaceous vegetation 2"
    assert classes.fill_template("a {c} {not a field}", "forest") == "a forest {not a field}"


CLIP_BENCHMARK_LISTS = classes.PROJECT_DIR / "tests" / "data" / "clip_benchmark" / "en_classnames.json"


def clip_benchmark_lists():
    """CLIP_benchmark 1.6.2's class lists of its English datasets (its en_classnames.json, MIT)."""
    import json
    return json.loads(CLIP_BENCHMARK_LISTS.read_text())


@pytest.mark.parametrize("dataset", sorted(clip_benchmark_lists()))
def test_clip_benchmark_class_lists_are_accepted(tmp_path, dataset, capsys):
    """Every English list of CLIP_benchmark, as its exports write classnames.txt: accepted as
    written, with one warning for the names CLIP cannot tell apart (found here by collections,
    independently of the code) and one for blank names."""
    import collections
    names = clip_benchmark_lists()[dataset]
    folders = [f"{index:04d}" for index in range(len(names))]
    split_dir = class_folders(tmp_path / dataset, folders)
    write_lines(split_dir / classes.CLASS_NAMES_FILE, names)
    described = classes.dataset_classes(split_dir, prompts="single")
    assert described.names == tuple(names)
    warnings = capsys.readouterr().err
    counts = collections.Counter(" ".join(name.lower().split()) for name in names)
    repeated = sorted(name for name, count in counts.items() if count > 1)
    assert ("cannot tell them apart" in warnings) == bool(repeated)
    for name in repeated:
        assert repr(name) in warnings
    assert ("a blank name" in warnings) == ("" in names)
    assert warnings.count("warning:") == bool(repeated) + ("" in names)


def test_the_repeated_and_blank_names_are_named(tmp_path, capsys):
    """The two lists that CLIP_benchmark ships and that used to be refused: the warning names
    the classes that share a name, and the class whose name is blank."""
    lists = clip_benchmark_lists()
    imagenet = class_folders(tmp_path / "imagenet1k", [f"{index:04d}" for index in range(1000)])
    write_lines(imagenet / classes.CLASS_NAMES_FILE, lists["imagenet1k"])
    classes.dataset_classes(imagenet, prompts="single")
    warning = capsys.readouterr().err
    for name in ("missile", "sunglasses"):
        indices = [index for index, value in enumerate(lists["imagenet1k"]) if value == name]
        assert f"{name!r} ({', '.join(f'{index:04d}' for index in indices)})" in warning
    clevr = class_folders(tmp_path / "clevr", list("abcdef"))
    write_lines(clevr / classes.CLASS_NAMES_FILE, lists["clevr_closest_object_distance"])
    described = classes.dataset_classes(clevr, prompts="single")
    assert described.names[3] == "" and "the class(es) d a blank name" in capsys.readouterr().err
