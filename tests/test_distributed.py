"""Chunked, resumable inference under torchrun (gloo, CPU): two processes give the bytes one
process gives, a stopped run resumes with any number of processes, parts of other options are not
reused, and an unreadable image in the second process's chunk is skipped as in one process (it
stops the run the same way too: compute_chunks raises in whichever process reads it, and
torchrun ends the others; test_robustness covers the message). The runs are of the
training split, as ImageNet-1k's pseudo-labelling is."""
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import PROJECT_DIR, run_cli
from inference import chunk_store

BATCH, CHUNK = 2, 4  # 18 images: chunks of 4, 4, 4, 4, 2; two processes take 10 and 8 images
# In chunk 2: once chunk 0 is done, the missing chunks 1-4 are dealt out in turn, and chunk 2
# is the second process's first (engine.predict).
BAD_IMAGE = 9


def clip_arguments(inputs, data, out, *extra):
    # One torch thread per process in every run: the logits' last bits depend on it.
    return ["--model", "clip", "--clip-weights", inputs.clip_weights, "--prompts", "single",
            "--data", data, "--split", "train", "--out", out, "--device", "cpu", "--batch-size", BATCH,
            "--chunk-size", CHUNK, "--threads", 1, *extra]


def torchrun(processes):
    """The launcher of a one-node job of `processes` processes."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]


def command(processes, arguments):
    """The command line of a run: torchrun for several processes, plain python for one."""
    launcher = torchrun(processes) if processes > 1 else [sys.executable]
    return [*launcher, str(PROJECT_DIR / "starter.py"), *map(str, arguments)]


def run_command(processes, arguments):
    return subprocess.run(command(processes, arguments), capture_output=True, text=True, timeout=600,
                          cwd=PROJECT_DIR)


def run_commands_in_one_job(processes, runs):
    """(the finished torchrun job of `processes` processes that made the runs, each run's
    argument list, one after another (tests/torchrun_commands.py), the main process's output of
    each run)."""
    import json
    from torchrun_commands import END_OF_RUN
    job = subprocess.run([*torchrun(processes), str(PROJECT_DIR / "tests" / "torchrun_commands.py"),
                          json.dumps([[str(argument) for argument in run] for run in runs])],
                         capture_output=True, text=True, timeout=600, cwd=PROJECT_DIR)
    return job, job.stdout.split(END_OF_RUN)[:len(runs)]


def parts(run_dir):
    return sorted(run_dir.glob("parts/*/part-*.npz"))


def interrupted_in_process(arguments):
    """Run `arguments` in this process (no DataLoader worker), interrupted as by Ctrl-C once it
    has written a part: the parts a stopped run leaves, without the start of a process of its
    own. Returns the exit code."""
    write = chunk_store.ChunkStore.write

    def write_then_interrupt(store, chunk, part):
        write(store, chunk, part)
        raise KeyboardInterrupt
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(chunk_store.ChunkStore, "write", write_then_interrupt)
        return run_cli(*arguments, "--workers", 0)


@pytest.fixture(scope="module")
def folder_with_bad_image(demo_inputs, tmp_path_factory):
    """A dataset root with the demo's val images and, as its train split, the same images with
    one that cannot be decoded, in the second process's chunk."""
    data = tmp_path_factory.mktemp("bad") / "imagenet-100"
    shutil.copytree(demo_inputs.data, data)
    shutil.copytree(data / "val", data / "train")
    files = sorted(path for path in (data / "train").rglob("*") if path.is_file())
    files[BAD_IMAGE].write_bytes(b"not a JPEG")
    return data, files[BAD_IMAGE]


@pytest.fixture(scope="module")
def one_process_cache(demo_inputs, folder_with_bad_image, tmp_path_factory):
    data, _ = folder_with_bad_image
    out = tmp_path_factory.mktemp("one")
    assert run_cli(*clip_arguments(demo_inputs, data, out, "--skip-bad-images", "--workers", 0)) == 0
    return (out / "train" / "clip" / "predictions.npz").read_bytes()


def test_stopped_run_resumes_with_two_processes_into_the_bytes_of_one(
        demo_inputs, folder_with_bad_image, one_process_cache, tmp_path, capsys):
    """Stopped, interrupted with other options, then resumed by torchrun with 2 processes: the
    parts are reused only when they fit, and the merged cache is byte for byte the one-process
    run's (one test, since every torchrun start costs each process its imports and model). The
    parts of SIGKILLed processes, which had no chance to clean up, resume alike: test_faults."""
    data, bad = folder_with_bad_image
    run_dir = tmp_path / "train" / "clip"
    arguments = clip_arguments(demo_inputs, data, tmp_path, "--skip-bad-images", "--workers", 1)
    assert interrupted_in_process(arguments) == 130
    finished = {path: path.read_bytes() for path in parts(run_dir)}
    assert len(finished) == 1  # chunk 0
    # Other options: the parts are not reused, and one sentence says so (SIGTERM ends a run as
    # this interruption does: test_process_cleanup, test_faults).
    capsys.readouterr()
    other = clip_arguments(demo_inputs, data, tmp_path, "--skip-bad-images", "--class-names", "wordnet")
    assert interrupted_in_process(other) == 130
    stderr = capsys.readouterr().err
    assert "interrupted" in stderr and len(parts(run_dir)) == len(finished) + 1
    assert (f"note: the {len(finished)} part(s) in" in stderr and 'class_names "openai"' in stderr
            and "not reused" in stderr)
    assert {path: path.read_bytes() for path in finished} == finished  # untouched
    # The first options again, with two processes: only the missing chunks are computed.
    result = run_command(2, arguments)
    assert result.returncode == 0, result.stderr
    assert f"inference: {18 - CHUNK * len(finished)} images" in result.stdout
    assert 'class_names "wordnet"' in result.stderr  # the interrupted run's parts, not reused
    assert (run_dir / "predictions.npz").read_bytes() == one_process_cache
    assert sorted(path.name for path in tmp_path.iterdir()) == ["cache", "train"]  # never OUT/clip
    assert f"skipped unreadable image {bad}" in result.stderr and "(2 processes)" in result.stdout
    assert result.stdout.count("== clip: 17 images") == 1  # printed by the main process only
    # This run's parts merged, then deleted; those of the other options kept.
    assert len(list((run_dir / "parts").iterdir())) == 1
    assert (run_dir / "histogram_recall.png").is_file()
    meta = np.load(run_dir / "predictions.npz")["meta"]
    assert '"split": "train"' in str(meta) and "chunk_size" not in str(meta)
