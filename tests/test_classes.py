"""The shipped class tables, --class-names, and the runs that must not need open_clip or timm."""
import json
import shutil
import sys

import numpy as np

from analysis import run_analysis
from sources import classes
from conftest import PROJECT_DIR, SUBSET_WNIDS, imports_of, run_cli

sys.path.insert(0, str(PROJECT_DIR / "scripts"))
import write_imagenet1k_table  # noqa: E402


def test_shipped_imagenet1k_table_is_what_the_script_writes():
    assert list(classes.imagenet1k_table().values()) == write_imagenet1k_table.table_rows()


def test_imagenet1k_table_against_open_clip_and_timm():
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES
    from timm.data import ImageNetInfo
    info = ImageNetInfo("imagenet-1k")
    rows = list(classes.imagenet1k_table().values())
    assert [row["wnid"] for row in rows] == info.label_names()
    assert [int(row["imagenet1k_index"]) for row in rows] == list(range(1000))
    assert [row["clip_name"] for row in rows] == list(IMAGENET_CLASSNAMES)
    assert [row["wordnet_lemmas"] for row in rows] == info.label_descriptions()
    assert all(row["wordnet_lemmas"].startswith(row["wordnet_name"]) for row in rows)
    assert classes.imagenet1k_table()["n03126707"]["wordnet_name"] == "crane"  # the machine


def test_openai_templates_of_imagenet_folders_are_open_clips(tmp_path):
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES
    for wnid in SUBSET_WNIDS:
        (tmp_path / wnid).mkdir()
    templates = classes.dataset_classes(tmp_path).templates
    assert len(templates) == 80 and all("{c}" in template for template in templates)
    assert ([classes.fill_template(template, "tench") for template in templates]
            == [template("tench") for template in OPENAI_IMAGENET_TEMPLATES])


def test_imagenet100_table_agrees_with_imagenet1k_table():
    table = classes.imagenet1k_table()
    for row in classes.read_imagenet100_table():
        assert row["imagenet1k_index"] == table[row["wnid"]]["imagenet1k_index"]
        assert row["clip_name"] == table[row["wnid"]]["clip_name"]


def test_describe_classes_by_name_list():
    indices, openai = classes.describe_classes(SUBSET_WNIDS)
    same_indices, wordnet = classes.describe_classes(SUBSET_WNIDS, "wordnet")
    assert indices == same_indices
    table = classes.imagenet1k_table()
    assert openai == [table[wnid]["clip_name"] for wnid in SUBSET_WNIDS]
    assert wordnet == [table[wnid]["wordnet_lemmas"].split(", ")[0] for wnid in SUBSET_WNIDS]
    assert openai != wordnet  # "American robin" vs "robin"


def test_wordnet_names_reach_prompts_cache_and_meta(tmp_path, real_runs, demo_inputs, capsys):
    out = tmp_path / "out"
    assert run_cli("--model", "clip", "--clip-weights", demo_inputs.clip_weights, "--prompts", "single",
                   "--class-names", "wordnet", "--data", demo_inputs.data, "--out", out, "--device", "cpu",
                   "--batch-size", 9, "--workers", 0) == 0
    with_wordnet = json.loads((out / "clip" / "metrics.json").read_text())
    assert with_wordnet["settings"]["class_names"] == "wordnet"
    assert [c["name"] for c in with_wordnet["classes"]] == classes.describe_classes(SUBSET_WNIDS, "wordnet")[1]
    # Other names are other prompts: another text classifier, so other logits than openai's.
    wordnet_logits = np.load(out / "clip" / "predictions.npz")["logits"]
    openai_logits = np.load(real_runs / "clip" / "predictions.npz")["logits"]
    assert not np.allclose(wordnet_logits, openai_logits)
    assert len(list((out / "cache").glob("clip-text-classifier-*.npy"))) == 1
    capsys.readouterr()
    run_analysis.reference_ranking(out, "debiaspl", SUBSET_WNIDS, {"class_names": "openai"})
    assert "used --class-names wordnet and this debiaspl run openai" in capsys.readouterr().err
    assert run_cli("--model", "clip", "--from-cache", "--out", out, "--data", demo_inputs.data) == 0
    assert "--class-names wordnet, not openai" in capsys.readouterr().err


def test_debiaspl_run_imports_neither_open_clip_nor_timm(tmp_path, real_runs, demo_inputs):
    """debiaspl names its classes from the shipped table. (--from-cache, clip-la, clip-pm and the
    report import no torch at all: tests/test_layout.py and the no-torch tests.)"""
    out = tmp_path / "out"
    shutil.copytree(real_runs / "clip", out / "clip")
    with imports_of("open_clip", "timm") as asked_for:
        assert run_cli("--model", "debiaspl", "--checkpoint", demo_inputs.debiaspl_checkpoint, "--data",
                       demo_inputs.data, "--out", out, "--device", "cpu", "--workers", 0) == 0
    assert not asked_for
    assert (out / "debiaspl" / "predictions.npz").is_file()
