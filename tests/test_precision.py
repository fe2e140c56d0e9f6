"""--precision and --workers: exact fp32 by default on every device, autocast only on CUDA."""
import os
import shutil

import numpy as np
import pytest

from inference import distributed
from inference import models
import starter
from conftest import run_cli
from test_pipeline import independent_clip_logits, independent_debiaspl_logits, load_npz
from test_robustness import assert_one_line_error

def test_runs_record_exact_fp32_by_default(real_runs):
    import torch
    for model in ("clip", "debiaspl"):
        assert load_npz(real_runs / model / "predictions.npz")["meta"].item().count('"precision": "fp32"') == 1
    # What a CUDA run computes in: TF32 off for matmuls and convolutions.
    assert torch.backends.cuda.matmul.fp32_precision == "ieee"
    assert torch.backends.cudnn.conv.fp32_precision == "ieee"


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_half_precision_on_cpu_is_one_sentence(tmp_path, demo_inputs, capsys, precision):
    code = run_cli("--model", "clip", "--clip-weights", demo_inputs.clip_weights, "--data",
                   demo_inputs.data, "--out", tmp_path, "--device", "cpu", "--precision", precision)
    assert code == 2
    assert_one_line_error(capsys, f"--precision {precision} needs a CUDA GPU")
    assert not list(tmp_path.rglob("*.npz"))


def test_autocast_follows_precision():
    import torch
    with models.autocast(torch.device("cpu"), "fp32"):
        assert not torch.is_autocast_enabled("cpu")
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    # The same code serves CUDA; CPU autocast stands in for it here (set_precision keeps half
    # precisions off the CPU in real runs).
    for precision, dtype in (("fp16", torch.float16), ("bf16", torch.bfloat16)):
        with models.autocast(torch.device("cpu"), precision):
            assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == dtype


def test_half_precision_allows_tf32_and_fp32_restores_exact():
    import torch
    cuda = torch.device("cuda")  # set_precision only sets flags; no GPU is touched
    try:
        models.set_precision(cuda, "bf16")
        assert torch.backends.cudnn.conv.fp32_precision == "tf32"
    finally:
        models.set_precision(torch.device("cpu"), "fp32")
    assert torch.backends.cudnn.conv.fp32_precision == "ieee"


def test_text_classifier_cache_key_has_half_precisions_only(tmp_path):
    key = [tmp_path, "RN50", {"tag": "x"}, ("a photo of a {c}.",), ["robin"]]
    paths = {precision: models.text_classifier_path(*key, precision) for precision in models.PRECISIONS}
    assert len(set(paths.values())) == 3


def test_from_cache_with_another_precision_notes_it(real_runs, tmp_path, capsys):
    shutil.copytree(real_runs / "clip", tmp_path / "clip")  # the analysis writes its outputs anew
    assert run_cli("--model", "clip", "--from-cache", "--out", tmp_path, "--precision", "bf16") == 0
    assert "--precision fp32, not bf16" in capsys.readouterr().err


def test_workers_and_threads_default_to_this_process_share_of_the_usable_cpus(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 3, 5}, raising=False)
    assert distributed.current_place({}).cpus == 3
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 12)
    assert distributed.current_place({}).cpus == 12
    four_per_node = {"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "4"}
    assert distributed.current_place(four_per_node).cpus == 3
    parsed = starter.build_parser().parse_args([])
    assert parsed.workers is None and parsed.threads is None  # None: the process's share


@pytest.mark.parametrize("model", ["clip", "debiaspl"])
def test_cuda_fp32_logits_equal_cpu_logits(cuda_gpu, tmp_path, real_runs, demo_inputs, model):
    """The GPU path with default options: logits within 1e-4 (relative) of the CPU run's and of
    an independent computation. Prints the difference (pytest -s) for benchmarks/RESULTS.md."""
    val_dir = demo_inputs.data / "val"
    if model == "clip":
        weights = ["--clip-weights", demo_inputs.clip_weights, "--prompts", "single"]
        independent = independent_clip_logits(demo_inputs.clip_weights, val_dir)
    else:
        shutil.copytree(real_runs / "clip", tmp_path / "clip")  # debiaspl takes clip's class order
        weights = ["--checkpoint", demo_inputs.debiaspl_checkpoint]
        independent = independent_debiaspl_logits(demo_inputs.debiaspl_checkpoint, val_dir, "main")
    assert run_cli("--model", model, *weights, "--data", demo_inputs.data, "--out", tmp_path,
                   "--device", "cuda") == 0
    cuda_logits = load_npz(tmp_path / model / "predictions.npz")["logits"]
    cpu_logits = load_npz(real_runs / model / "predictions.npz")["logits"]
    scale = np.abs(cpu_logits).max()
    print(f"\n{model}: max |cuda fp32 - cpu fp32| / max |cpu| = "
          f"{np.abs(cuda_logits - cpu_logits).max() / scale:.1e}")
    for expected in (cpu_logits, independent):
        np.testing.assert_allclose(cuda_logits, expected, rtol=1e-4, atol=1e-4 * scale)
