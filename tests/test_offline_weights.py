"""Offline first: with the network unreachable (HTTPS_PROXY pointing at a closed local port, so
nothing ever leaves this machine) or HF_HUB_OFFLINE=1, a weights tag in no local cache stops the
run in at most 3 lines naming the file to fetch; in the Hugging Face cache, it runs, from the
cached file, with the logits the same weights give as a --clip-weights file."""
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from demo import synthetic
from conftest import PROJECT_DIR, run_cli

HUB_REPOSITORY = "timm/resnet50_clip.openai"  # open_clip's hf_hub entry of RN50's openai tag


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("offline") / "tiny"
    synthetic.write_image_folder(root / "val", ["annual_crop", "forest"], images_per_class=2, seed=5)
    return root


def closed_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def offline_environment(home, **extra):
    """No cached weights anywhere (HOME, HF_HOME in tmp) and no way out."""
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("HF_HUB_OFFLINE", "HF_HUB_CACHE", "HTTPS_PROXY", "https_proxy")}
    return {**environment, "HOME": str(home), "HF_HOME": str(home / "hf"),
            "HTTPS_PROXY": f"http://127.0.0.1:{closed_port()}", **extra}


def starter(environment, *argv):
    start = time.perf_counter()
    result = subprocess.run([sys.executable, str(PROJECT_DIR / "starter.py"), *map(str, argv)],
                            capture_output=True, text=True, timeout=120, env=environment,
                            cwd=PROJECT_DIR)
    return result, time.perf_counter() - start


def common(dataset, out):
    return ["--model", "clip", "--clip-model", "RN50", "--data", dataset, "--out", out,
            "--device", "cpu", "--prompts", "single", "--batch-size", 2, "--workers", 0,
            "--threads", 1]


@pytest.mark.slow  # a command in a subprocess, with torch
@pytest.mark.parametrize("offline_setting", [{}, {"HF_HUB_OFFLINE": "1"}],
                         ids=["unreachable", "HF_HUB_OFFLINE"])
def test_a_tag_in_no_cache_stops_in_three_lines(dataset, tmp_path, offline_setting):
    result, seconds = starter(offline_environment(tmp_path, **offline_setting),
                              *common(dataset, tmp_path / "out"), "--clip-weights", "openai")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) <= 3, result.stderr
    assert lines[0].startswith("error: the openai weights of RN50 are in no local cache")
    assert ("HF_HUB_OFFLINE is set" in lines[0]) == bool(offline_setting)
    assert f"open_clip_model.safetensors of the Hugging Face repository {HUB_REPOSITORY}" in result.stderr
    assert str(tmp_path / "hf" / "hub") in result.stderr and "--clip-weights PATH" in lines[-1]
    assert not (tmp_path / "out" / "clip").exists()  # stopped before any image was read
    print(f"stopped after {seconds:.1f} s, interpreter start and imports included")


def test_a_tag_in_the_hugging_face_cache_runs_offline(dataset, demo_inputs, tmp_path):
    """The random RN50 weights as open_clip's hub file in a Hugging Face cache laid out as
    huggingface_hub lays it out: the tag runs with no network, and its logits are the file's."""
    import torch
    from safetensors.torch import save_file
    snapshot = (tmp_path / "hf" / "hub" / f"models--{HUB_REPOSITORY.replace('/', '--')}"
                / "snapshots" / "0123abcd")
    snapshot.mkdir(parents=True)
    state_dict = torch.load(demo_inputs.clip_weights, weights_only=True)
    save_file({key: value.contiguous() for key, value in state_dict.items()},
              snapshot / "open_clip_model.safetensors")
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("0123abcd")
    result, _ = starter(offline_environment(tmp_path), *common(dataset, tmp_path / "tag"),
                        "--clip-weights", "openai")
    assert result.returncode == 0, result.stderr
    assert run_cli(*common(dataset, tmp_path / "file"), "--clip-weights", demo_inputs.clip_weights) == 0
    tag = np.load(next((tmp_path / "tag").glob("*/predictions.npz")))
    file = next((tmp_path / "file").glob("*/predictions.npz"))
    assert tag["logits"].tobytes() == np.load(file)["logits"].tobytes()
    assert '"tag": "openai"' in str(tag["meta"])
