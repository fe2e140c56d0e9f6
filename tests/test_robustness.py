"""Bad input, untrusted checkpoints and interruptions: one clear sentence, exit 2, no traceback,
nothing half-written, nothing run from a file, nothing stale."""
import hashlib
import os
import json
import shutil
import sys
from types import SimpleNamespace
from pathlib import Path

import numpy as np
import pytest

from analysis import run_analysis
from runs import cache
from inference import checkpoints, models
from runs import outputs
from demo import synthetic
from conftest import SUBSET_WNIDS, run_cli


def assert_one_line_error(capsys, *fragments):
    stderr = capsys.readouterr().err
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and stderr.rstrip().endswith(errors[0]), stderr
    assert "Traceback" not in stderr, stderr
    err = errors[0]
    for fragment in fragments:
        assert fragment in err, err
    return err


@pytest.fixture
def out_with_clip(tmp_path, real_runs):
    """An OUT folder holding clip's metrics.json, so debiaspl runs can start."""
    out = tmp_path / "out"
    shutil.copytree(real_runs / "clip", out / "clip")
    return out


@pytest.fixture
def data_copy(tmp_path, demo_inputs):
    shutil.copytree(demo_inputs.data, tmp_path / "data")
    return tmp_path / "data"


def debiaspl_args(checkpoint, data, out, *extra):
    return ["--model", "debiaspl", "--checkpoint", checkpoint, "--data", data, "--out", out,
            "--device", "cpu", "--workers", 0, "--batch-size", 4, *extra]


# 1. Bad input -------------------------------------------------------------------------------

def test_missing_data_folder(tmp_path, capsys):
    assert run_cli("--model", "clip", "--data", tmp_path / "nowhere", "--out", tmp_path / "out") == 2
    assert_one_line_error(capsys, f"the data folder {tmp_path / 'nowhere'} (--data) does not exist",
                          "check the path")
    assert not (tmp_path / "out").exists()


def test_missing_default_data_folder_names_the_course_copy_and_the_demo(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("IMAGENET100_ROOT", raising=False)
    assert run_cli("--model", "clip", "--out", tmp_path / "out") == 2
    assert_one_line_error(capsys, "the course's ImageNet100 copy", "pass --data PATH",
                          "python starter.py --demo")


def test_mistyped_model_is_one_line_naming_the_nearest(capsys):
    with pytest.raises(SystemExit) as exit_:
        run_cli("--model", "clpi")
    stderr = capsys.readouterr().err
    assert exit_.value.code == 2 and len(stderr.strip().splitlines()) == 1
    assert "did you mean --model clip?" in stderr and "--help" in stderr


@pytest.mark.parametrize("typed, nearest", [("--studentid", "--student-id"),
                                             ("--form-cache", "--from-cache"),
                                             ("--clip_weights=openai", "--clip-weights")])
def test_mistyped_option_is_one_line_naming_the_nearest(capsys, typed, nearest):
    with pytest.raises(SystemExit) as exit_:
        run_cli("--report", typed, "123")
    stderr = capsys.readouterr().err
    assert exit_.value.code == 2 and len(stderr.strip().splitlines()) == 1
    assert f"did you mean {nearest}?" in stderr and "--help" in stderr


def test_a_stray_word_gets_no_made_up_option(capsys):
    with pytest.raises(SystemExit):
        run_cli("--report", "clip")
    stderr = capsys.readouterr().err
    assert "unrecognized arguments: clip" in stderr and "did you mean" not in stderr


def test_the_demos_last_lines_give_both_questions_from_cache_commands(tmp_path, capsys, monkeypatch):
    """Its runs are replaced by nothing: only what it prints at the end is looked at."""
    import shlex
    import starter
    monkeypatch.setattr(starter, "check_install", lambda args, out_dir: None)
    monkeypatch.setattr(starter, "analyse_simulated_runs", lambda args, out_dir: None)
    assert run_cli("--demo", "--out", tmp_path / "my out") == 0
    last_lines = capsys.readouterr().out.strip().splitlines()[-2:]
    for line, (question, model) in zip(last_lines, (("Q1", "clip"), ("Q2", "debiaspl"))):
        label, command = line.strip().split(": ", 1)
        args = starter.build_parser().parse_args(shlex.split(command)[2:])
        assert (label, args.model, args.from_cache, args.out) == (question, model, True,
                                                                  str(tmp_path / "my out" / "demo"))


def test_help_opens_with_the_workflow(capsys):
    with pytest.raises(SystemExit):
        run_cli("--help")
    help_text = capsys.readouterr().out
    workflow = help_text[:help_text.index("options:")]
    assert all(step in workflow for step in ("--model clip", "--model debiaspl", "--report --name"))
    assert "(default: None)" not in help_text and "(default: False)" not in help_text


def test_an_option_the_mode_does_not_use_gets_a_note(tmp_path, capsys, clip_out):
    assert run_cli("--model", "clip", "--from-cache", "--out", clip_out, "--name", "Ada",
                   "--pm-target", tmp_path / "target.json") == 0
    stderr = capsys.readouterr().err
    assert "note: --name applies to --report or --demo only" in stderr
    assert "note: --pm-target applies to --model clip-pm only" in stderr


def test_report_on_an_empty_folder_points_to_the_demo(tmp_path, capsys, synthetic_runs):
    shutil.copytree(synthetic_runs, tmp_path / "figures" / "demo")
    assert run_cli("--report", "--out", tmp_path / "figures") == 2
    assert_one_line_error(capsys, f"--report --out {tmp_path / 'figures' / 'demo'}")


def test_folder_without_class_folders(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no classes here")
    assert run_cli("--model", "clip", "--data", tmp_path / "empty", "--out", tmp_path / "out") == 2
    assert_one_line_error(capsys, "no class folders")


def test_class_folder_that_is_not_a_wnid(tmp_path, capsys, data_copy):
    (data_copy / "val" / "cats").mkdir()
    assert run_cli("--model", "clip", "--data", data_copy, "--out", tmp_path / "out") == 2
    assert_one_line_error(capsys, "'cats'", "not an ImageNet-1k wnid")


def break_images(val_dir):
    """Truncate one JPEG and replace another with bytes that are no image; return their paths."""
    truncated = sorted((val_dir / SUBSET_WNIDS[1]).iterdir())[0]
    truncated.write_bytes(truncated.read_bytes()[:300])
    garbage = sorted((val_dir / SUBSET_WNIDS[4]).iterdir())[1]
    garbage.write_bytes(b"this is not a JPEG")
    return [truncated, garbage]


def test_unreadable_images_stop_the_run_and_name_the_file(tmp_path, capsys, demo_inputs, data_copy,
                                                          out_with_clip):
    truncated, _ = break_images(data_copy / "val")
    code = run_cli(*debiaspl_args(demo_inputs.debiaspl_checkpoint, data_copy, out_with_clip))
    assert code == 2
    assert_one_line_error(capsys, str(truncated), "--skip-bad-images")
    # Nothing but the parts finished before the bad image, for the same command to go on from.
    assert [path.name for path in (out_with_clip / "debiaspl").iterdir()] == ["parts"]


def test_skip_bad_images_evaluates_the_rest(capsys, demo_inputs, data_copy, out_with_clip):
    broken = break_images(data_copy / "val")
    code = run_cli(*debiaspl_args(demo_inputs.debiaspl_checkpoint, data_copy, out_with_clip,
                                  "--skip-bad-images"))
    assert code == 0
    summary = json.loads((out_with_clip / "debiaspl" / "metrics.json").read_text())
    assert summary["skipped"] == [str(p.relative_to(data_copy / "val")) for p in broken]
    image_files = sum(1 for p in (data_copy / "val").rglob("*.JPEG"))
    assert summary["num_images"] + len(summary["skipped"]) == image_files == 18
    with np.load(out_with_clip / "debiaspl" / "predictions.npz") as cache:
        assert len(cache["paths"]) == len(cache["labels"]) == len(cache["logits"]) == 16
        assert not set(summary["skipped"]) & set(cache["paths"].tolist())
    assert "skipped unreadable image" in capsys.readouterr().err


def test_missing_checkpoint(tmp_path, capsys, demo_inputs, out_with_clip):
    assert run_cli(*debiaspl_args(tmp_path / "none.pth.tar", demo_inputs.data, out_with_clip)) == 2
    assert_one_line_error(capsys, "none.pth.tar", "does not exist")


def test_file_that_is_not_a_checkpoint(tmp_path, capsys, demo_inputs, out_with_clip):
    (tmp_path / "notes.pth.tar").write_bytes(b"these are lecture notes, not weights")
    assert run_cli(*debiaspl_args(tmp_path / "notes.pth.tar", demo_inputs.data, out_with_clip)) == 2
    assert_one_line_error(capsys, "notes.pth.tar", "not a readable PyTorch")


def test_checkpoint_of_another_architecture(tmp_path, capsys, demo_inputs, out_with_clip):
    import torch
    import torchvision
    resnet18 = torchvision.models.resnet18().state_dict()
    torch.save({"state_dict": synthetic.fixmatch_state_dict(resnet18, resnet18)}, tmp_path / "r18.pth.tar")
    assert run_cli(*debiaspl_args(tmp_path / "r18.pth.tar", demo_inputs.data, out_with_clip)) == 2
    # What differs, from torchvision's own ResNet-50: the first three of its keys that ResNet-18
    # lacks and how many more, and its first key of another shape.
    resnet50 = torchvision.models.resnet50().state_dict()
    missing = [key for key in resnet50 if key not in resnet18]
    reshaped = next(key for key, value in resnet50.items() if key in resnet18 and resnet18[key].shape != value.shape)
    assert_one_line_error(capsys, "does not fit ResNet",
                          f"missing keys: {', '.join(missing[:3])} and {len(missing) - 3} more",
                          f"shapes differ: {reshaped} {tuple(resnet18[reshaped].shape)} vs "
                          f"{tuple(resnet50[reshaped].shape)}")


def test_clip_weights_of_another_architecture(tmp_path, capsys, demo_inputs):
    import torch
    torch.save({"visual.conv1.weight": torch.zeros(1)}, tmp_path / "other.pt")
    args = ["--model", "clip", "--clip-weights", tmp_path / "other.pt", "--data", demo_inputs.data,
            "--out", tmp_path / "out", "--device", "cpu", "--prompts", "single"]
    assert run_cli(*args) == 2
    assert_one_line_error(capsys, "does not fit CLIP", "missing keys:", "shapes differ: visual.conv1.weight")


def test_checkpoint_without_the_requested_branch(tmp_path, capsys, demo_inputs, out_with_clip):
    import torch
    main_only = {k: v for k, v in torch.load(demo_inputs.debiaspl_checkpoint, weights_only=True)["state_dict"].items()
                 if ".main." in k}
    torch.save({"state_dict": main_only}, tmp_path / "main-only.pth.tar")
    args = debiaspl_args(tmp_path / "main-only.pth.tar", demo_inputs.data, out_with_clip, "--branch", "ema")
    assert run_cli(*args) == 2
    assert_one_line_error(capsys, "no 'ema' branch", "main")


def test_cuda_without_cuda(no_cuda_gpu, tmp_path, capsys, demo_inputs, out_with_clip):
    args = debiaspl_args(demo_inputs.debiaspl_checkpoint, demo_inputs.data, out_with_clip)
    args[args.index("--device") + 1] = "cuda"
    assert run_cli(*args) == 2
    assert_one_line_error(capsys, "--device cuda", "--device cpu")


def test_from_cache_without_a_cache(tmp_path, capsys):
    out = tmp_path / "my-runs"
    assert run_cli("--model", "clip", "--from-cache", "--out", out) == 2
    assert_one_line_error(capsys, "no cache", f"run `python starter.py --model clip --out {out}` first")


def test_from_cache_with_a_damaged_cache(tmp_path, capsys, real_runs):
    (tmp_path / "clip").mkdir()
    data = (real_runs / "clip" / "predictions.npz").read_bytes()
    (tmp_path / "clip" / "predictions.npz").write_bytes(data[: len(data) // 2])
    assert run_cli("--model", "clip", "--from-cache", "--out", tmp_path) == 2
    assert_one_line_error(capsys, "damaged")
    assert not (tmp_path / "clip" / "metrics.json").exists()


# 2. Checkpoints are untrusted pickles --------------------------------------------------------

class CreatesFileWhenUnpickled:
    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def test_checkpoint_that_would_run_code_runs_nothing(tmp_path, capsys, demo_inputs, out_with_clip):
    import torch
    marker = tmp_path / "code-ran"
    checkpoint = torch.load(demo_inputs.debiaspl_checkpoint, weights_only=True)
    checkpoint["payload"] = CreatesFileWhenUnpickled(marker)
    torch.save(checkpoint, tmp_path / "crafted.pth.tar")
    args = debiaspl_args(tmp_path / "crafted.pth.tar", demo_inputs.data, out_with_clip)
    assert run_cli(*args) == 2
    assert_one_line_error(capsys, "--trust-checkpoint", "open")
    assert not marker.exists()
    # The explicit opt-in loads it (and so runs its code): proof the refusal was the guard.
    assert run_cli(*args, "--trust-checkpoint") == 0
    assert marker.exists()


def test_numpy_scalars_in_checkpoints_are_allowed(tmp_path):
    import torch
    path = synthetic.write_debiaspl_checkpoint(tmp_path / "np.pth.tar", best_acc1=np.float64(71.5))
    checkpoint = checkpoints.read_checkpoint(path, "DebiasPL checkpoint")
    assert checkpoint["best_acc1"] == 71.5 and checkpoint["epoch"] == 50
    torch.save({"dtype": np.dtype("float32"), "count": np.int64(3)}, tmp_path / "dtypes.pth")
    assert checkpoints.read_checkpoint(tmp_path / "dtypes.pth", "file")["count"] == 3


def test_numpy_1_era_checkpoint_is_allowed(tmp_path):
    """numpy 1 pickled scalars as numpy.core.multiarray.scalar: rewrite a fresh file that way."""
    import torch
    import zipfile
    torch.save({"best_acc1": np.float64(71.5)}, tmp_path / "new.pth")
    with zipfile.ZipFile(tmp_path / "new.pth") as new, \
            zipfile.ZipFile(tmp_path / "legacy.pth", "w", zipfile.ZIP_STORED) as legacy:
        for info in new.infolist():
            data = new.read(info.filename)
            if info.filename.endswith("data.pkl"):
                assert b"numpy._core.multiarray\nscalar" in data
                data = data.replace(b"numpy._core.multiarray\nscalar", b"numpy.core.multiarray\nscalar")
            legacy.writestr(info.filename, data)
    assert checkpoints.read_checkpoint(tmp_path / "legacy.pth", "file")["best_acc1"] == 71.5


# 3. Nothing lost, nothing stale --------------------------------------------------------------
# (An interrupted write leaves the old file whole: test_figure_processes, in this process and in
# the figure workers; a command stopped by a signal: test_process_cleanup.)

def test_unwritable_output_is_one_sentence_and_leaves_no_temporary(tmp_path, real_runs, capsys):
    shutil.copytree(real_runs / "clip", tmp_path / "clip")
    (tmp_path / "clip" / "confusion_matrix.png").unlink()
    (tmp_path / "clip" / "confusion_matrix.png").mkdir()  # a folder in the way
    assert run_cli("--model", "clip", "--from-cache", "--out", tmp_path) == 2
    assert_one_line_error(capsys, "cannot write", "confusion_matrix.png", "Is a directory")
    assert not [p.name for p in (tmp_path / "clip").iterdir() if p.name.endswith(".tmp")]


def test_cache_records_what_produced_it(real_runs, demo_inputs):
    from torchvision.datasets import ImageFolder
    for model, weights in (("clip", demo_inputs.clip_weights), ("debiaspl", demo_inputs.debiaspl_checkpoint)):
        meta = cache.load_predictions(real_runs / model / "predictions.npz").meta
        assert meta["model"] == model
        assert meta["weights_identity"]["sha256"] == hashlib.sha256(Path(weights).read_bytes()).hexdigest()
        assert meta["image_files"] == 18
        val = demo_inputs.data / "val"  # torchvision's own listing as the oracle
        relative = sorted(os.path.relpath(path, val) for path, _ in ImageFolder(val).samples)
        assert meta["file_list_sha256"] == hashlib.sha256("\n".join(relative).encode()).hexdigest()
    assert cache.load_predictions(real_runs / "clip" / "predictions.npz").meta["prompts"] == "single"
    assert cache.load_predictions(real_runs / "debiaspl" / "predictions.npz").meta["branch"] == "main"


def test_from_cache_with_other_options_says_so(tmp_path, real_runs, demo_inputs, data_copy, capsys):
    shutil.copytree(real_runs / "clip", tmp_path / "clip")
    assert run_cli("--model", "clip", "--from-cache", "--out", tmp_path, "--prompts", "single",
                   "--data", demo_inputs.data, "--clip-weights", demo_inputs.clip_weights) == 0
    assert "note:" not in capsys.readouterr().err
    (data_copy / "val" / SUBSET_WNIDS[0] / "extra.JPEG").write_bytes(
        (data_copy / "val" / SUBSET_WNIDS[1]).joinpath(sorted(p.name for p in (data_copy / "val" / SUBSET_WNIDS[1]).iterdir())[0]).read_bytes())
    assert run_cli("--model", "clip", "--from-cache", "--out", tmp_path, "--prompts", "ensemble",
                   "--data", data_copy) == 0
    err = capsys.readouterr().err
    assert "--prompts single, not ensemble" in err and "other image files" in err


def test_text_classifier_is_cached(tmp_path, real_runs, demo_inputs, monkeypatch):
    import open_clip
    cached = list((real_runs / "cache").glob("clip-text-classifier-*.npy"))
    assert len(cached) == 1
    out = tmp_path / "out"
    shutil.copytree(real_runs / "cache", out / "cache")

    def must_not_run(*args, **kwargs):
        raise AssertionError("the text classifier was rebuilt instead of read from the cache")

    monkeypatch.setattr(open_clip, "build_zero_shot_classifier", must_not_run)
    assert run_cli("--model", "clip", "--clip-weights", demo_inputs.clip_weights, "--prompts", "single",
                   "--data", demo_inputs.data, "--out", out, "--device", "cpu", "--workers", 0) == 0
    with np.load(out / "clip" / "predictions.npz") as new, np.load(real_runs / "clip" / "predictions.npz") as old:
        np.testing.assert_allclose(new["logits"], old["logits"], rtol=1e-5, atol=1e-4)


def test_class_folders_without_images_fail_before_any_model_loads(tmp_path, capsys, monkeypatch):
    (tmp_path / "data" / "val" / SUBSET_WNIDS[0]).mkdir(parents=True)
    (tmp_path / "data" / "val" / SUBSET_WNIDS[0] / "readme.txt").write_text("no images")
    monkeypatch.setattr(models, "build_clip_zero_shot", lambda *a, **k: pytest.fail("model loaded"))
    assert run_cli("--model", "clip", "--data", tmp_path / "data", "--out", tmp_path / "out") == 2
    assert_one_line_error(capsys, "hold no image files")


@pytest.mark.slow  # several analyses or reports: among the costliest of the edit-test loop
def test_run_on_other_images_than_clips_says_so(synthetic_runs, capsys):
    from conftest import synthetic_predictions
    clip_metrics = json.loads((synthetic_runs / "clip" / "metrics.json").read_text())
    clip_metrics["settings"]["file_list_sha256"] = "a" * 64
    (synthetic_runs / "clip" / "metrics.json").write_text(json.dumps(clip_metrics))
    predictions = synthetic_predictions("debiaspl", 1)
    predictions.meta["file_list_sha256"] = "b" * 64
    run_analysis.analyze(predictions, synthetic_runs / "debiaspl", synthetic_runs)
    assert "saw other image files than this debiaspl run" in capsys.readouterr().err
    predictions.meta["file_list_sha256"] = "a" * 64
    run_analysis.analyze(predictions, synthetic_runs / "debiaspl", synthetic_runs)
    assert "saw other image files" not in capsys.readouterr().err


def test_install_check_is_a_few_lines(tmp_path, capfd, monkeypatch):
    """The demo's install check: one line per model however much its runs print (stdout,
    stderr, progress bars), titled as random weights; what they printed shows when one fails."""
    import starter
    seen = []

    def noisy_run(args):
        seen.append(args)
        print("\n".join(f"analysis line {i}" for i in range(60)))
        print("warning: the folder's 5 classes are not the standard ImageNet100", file=sys.stderr)
        print("100%|##########| 10/10 [00:01<00:00]", file=sys.stderr)
        if args.model == "debiaspl" and len(seen) > 2:
            raise outputs.UserError("the DebiasPL checkpoint has no 'state_dict' entry.")
        return "the answers", {"model": args.model, "num_images": 10}, tmp_path / args.model

    monkeypatch.setattr(starter, "run", noisy_run)
    monkeypatch.setattr(synthetic, "write_demo_inputs", lambda folder, wnids, images: SimpleNamespace(
        data=folder, clip_weights=folder / "RN50.pt", debiaspl_checkpoint=folder / "c.pth.tar"))
    args = starter.build_parser().parse_args(["--demo", "--device", "cpu", "--workers", "0"])
    starter.check_install(args, tmp_path)
    captured = capfd.readouterr()
    lines = (captured.out + captured.err).strip().splitlines()
    assert len(lines) < 20, lines
    assert [line.split(",")[0] for line in lines if line.startswith("install check:")] == [
        "install check: clip OK", "install check: debiaspl OK"]
    assert all(parsed.title_note == starter.RANDOM_WEIGHTS for parsed in seen)
    with pytest.raises(outputs.UserError):
        starter.check_install(args, tmp_path)
    assert "analysis line 59" in capfd.readouterr().err  # a failing run's output is shown
