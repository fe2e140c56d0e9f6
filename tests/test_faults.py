"""A cluster's ordinary faults never hang a job, never let two jobs write one run folder, and never
lose finished work: the fault matrix of issue 25. Each case checks, with /proc (ps), that every
process is gone within the stated seconds, that the finished parts are untouched, and that the
rerun's cache is byte for byte an uninterrupted run's. Every wait has a deadline: a hang fails
the test, never holds it. One generated folder, random weights and one uninterrupted run are
shared by the cases, and the torchrun cases run one after another on one run folder, as a user's
reruns would. The seconds printed are those of benchmarks/RESULTS.md."""
import contextlib
import errno
import os
import shutil
import signal
import socket
import sys
import tempfile
import time

import numpy as np
import pytest

from inference import chunk_store, distributed, engine
from runs import outputs
from conftest import PROJECT_DIR, hang_guard, run_cli
from test_distributed import clip_arguments, command, parts
from test_process_cleanup import GONE_WITHIN_SECONDS, INTERRUPTED, process_table, process_tree

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads processes from /proc")

CHUNK = 2  # 18 images: 9 chunks of 2, enough for three interrupted jobs and a rerun


@pytest.fixture(scope="module")
def train_folder(demo_inputs, tmp_path_factory):
    """The demo's 18 images as a dataset root's train split."""
    data = tmp_path_factory.mktemp("faults") / "imagenet-100"
    shutil.copytree(demo_inputs.data / "val", data / "train")
    return data


def arguments(demo_inputs, data, out, *extra):
    return clip_arguments(demo_inputs, data, out, "--chunk-size", CHUNK, *extra)


@pytest.fixture(scope="module")
def reference_cache(demo_inputs, train_folder, tmp_path_factory):
    """predictions.npz of an uninterrupted one-process run (in this process, without the
    interpreter's start)."""
    out = tmp_path_factory.mktemp("uninterrupted")
    assert run_cli(*arguments(demo_inputs, train_folder, out, "--workers", 0)) == 0
    return (out / "train" / "clip" / "predictions.npz").read_bytes()


def part_bytes(run_dir):
    return {path: path.read_bytes() for path in parts(run_dir)}


def untouched(before, run_dir):
    """Whether every part of `before` is still there, byte for byte."""
    return all(path.is_file() and path.read_bytes() == data for path, data in before.items())


def temporary_files(run_dir):
    return sorted(path.name for path in run_dir.rglob(".*.tmp"))


# -- waiting for the other processes' chunks has a deadline ------------------------------------

def test_waiting_for_the_other_processes_chunks_has_a_deadline_naming_what_is_missing(tmp_path):
    store = chunk_store.ChunkStore(tmp_path, "f" * 64, 10, 2, {"model": "clip"})
    store.prepare()
    owners = {chunk: chunk % 2 for chunk in range(5)}  # rank 1 took chunks 1 and 3
    for chunk in (0, 2, 4):
        store.write(chunk, chunk_store.Part(np.zeros((2, 3)), np.array(store.images(chunk)),
                                            np.zeros(2), {}))
    place = distributed.Place(rank=0, world_size=2, local_world_size=2)

    # A broken deadline fails the test instead of holding it; the guard is far below the
    # default wait (MIN_WAIT_SECONDS), so the wait can only have ended by `limit`.
    with hang_guard(30), engine.JobProgress(store, place, "test") as progress:
        started = time.monotonic()
        with pytest.raises(engine.ChunksMissing) as expired:
            progress.wait_for_the_others(owners, limit=0.3)
    assert time.monotonic() - started >= 0.3
    assert expired.value.missing_by_rank == {1: [1, 3]}
    assert "and 2 chunks of process 1 (1, 3) are missing" in str(expired.value)
    # The rule without --chunk-wait: 3 x this process's slowest chunk, never under a minute.
    assert engine.WAIT_FACTOR == 3 and engine.MIN_WAIT_SECONDS == 60


# -- a full disk, in one process: injected into the writes of a part and of the merge ----------

@contextlib.contextmanager
def disk_full_while_writing(name_start, after_bytes=1000):
    """The disk fills once `after_bytes` of a file whose name starts with `name_start` are
    written (write_atomic's temporary file: '.part-000003', '.predictions')."""
    real, full = tempfile.NamedTemporaryFile, {}

    def named_temporary_file(**options):
        handle = real(**options)
        if options.get("prefix", "").startswith(name_start):
            written, write = [0], handle.file.write

            def filling(data):
                written[0] += len(data)
                if written[0] > after_bytes:
                    full["since"] = time.monotonic()
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                return write(data)
            handle.write = filling
        return handle
    outputs.tempfile.NamedTemporaryFile = named_temporary_file
    try:
        yield full
    finally:
        outputs.tempfile.NamedTemporaryFile = real


def run_in_process(capsys, *argv):
    return run_cli(*argv), capsys.readouterr()


def test_a_full_disk_stops_in_one_sentence_and_the_reruns_resume(
        demo_inputs, train_folder, reference_cache, tmp_path, capsys):
    out = tmp_path / "out"
    run_dir = out / "train" / "clip"
    options = arguments(demo_inputs, train_folder, out, "--workers", 0)
    with disk_full_while_writing(".part-000003") as full:
        code, printed = run_in_process(capsys, *options)
    seconds = {"a full disk while writing a part": time.monotonic() - full["since"]}
    [folder] = (run_dir / "parts").iterdir()
    assert code == 2 and printed.err.splitlines()[-1].startswith(f"error: no space left in {folder} (")
    assert "needed): free some, and run the same command again" in printed.err
    finished = part_bytes(run_dir)
    assert len(finished) == 3 and not temporary_files(run_dir)
    assert not (run_dir / "predictions.npz").exists()

    with disk_full_while_writing(".predictions") as full:
        code, printed = run_in_process(capsys, *options)
    seconds["a full disk while merging"] = time.monotonic() - full["since"]
    assert "resuming: 3 of 9 chunks done (6 images), computing 6 on 1 process\n" in printed.out
    assert code == 2 and printed.err.splitlines()[-1].startswith(f"error: no space left in {run_dir} (")
    assert untouched(finished, run_dir) and len(parts(run_dir)) == 9 and not temporary_files(run_dir)
    assert not (run_dir / "predictions.npz").exists()

    # Only --batch-size changed, on a copy: every part reused, and no false difference named.
    shutil.copytree(out, tmp_path / "copy")
    code, printed = run_in_process(capsys, *arguments(demo_inputs, train_folder, tmp_path / "copy",
                                                      "--workers", 0, "--batch-size", 1))
    assert code == 0 and "resuming: 9 of 9 chunks done (18 images), merging them\n" in printed.out
    assert "note:" not in printed.err and "inference:" not in printed.out
    assert (tmp_path / "copy" / "train" / "clip" / "predictions.npz").read_bytes() == reference_cache

    code, printed = run_in_process(capsys, *options)
    assert code == 0 and (run_dir / "predictions.npz").read_bytes() == reference_cache
    assert not (run_dir / "parts").exists()
    with capsys.disabled():
        for case, after in seconds.items():
            print(f"\n{case}: one process, its error returned {after:.3f} s after it")


# -- under torchrun, 2 processes: killed launcher, killed rank, Slurm's SIGTERM, two jobs -------

def ranks(job):
    """{rank: pid} of a torchrun job's processes (its agent's children)."""
    table = process_table()
    found = {}
    for pid in job.seen:
        if pid in table and table[pid][0] == job.process.pid:
            with contextlib.suppress(OSError):
                with open(f"/proc/{pid}/environ", "rb") as environ:
                    variables = dict(item.split(b"=", 1) for item in environ.read().split(b"\0") if b"=" in item)
                found[int(variables[b"RANK"])] = pid
    return found


def seconds_until(condition, since, limit):
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, f"not within {limit} s"
        time.sleep(0.01)
    return time.monotonic() - since


def fault(job, run_dir, send, message=None):
    """Once the job has written a part of its own, send the fault; then wait until every process
    of the job is gone: its ranks and their workers within GONE_WITHIN_SECONDS, torchrun's agent
    after them (its own shutdown and report), and its one line, `message`, is printed. Returns
    the parts at the fault, and the seconds from it to the ranks gone, to the agent gone and to
    the message."""
    known = len(parts(run_dir))
    job.watch(until=lambda: len(parts(run_dir)) > known and len(ranks(job)) == 2, timeout=240)
    before, sent = part_bytes(run_dir), time.monotonic()
    send(job)
    said = message and seconds_until(lambda: message in job.stderr(), sent, GONE_WITHIN_SECONDS)
    ranks_gone = seconds_until(lambda: not job.alive(), sent, GONE_WITHIN_SECONDS)
    job.process.wait(timeout=GONE_WITHIN_SECONDS)
    return before, (ranks_gone, time.monotonic() - sent, said)


def signal_all(job, number):
    """As Slurm does on preemption: the signal to every process of the job at once."""
    for pid in [job.process.pid, *job.alive()]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, number)


def started(argv, log_dir):
    log_dir.mkdir()
    return process_tree(argv, log_dir, cwd=PROJECT_DIR, start_new_session=True)


@pytest.mark.slow
def test_fault_matrix_under_torchrun(demo_inputs, train_folder, reference_cache, tmp_path):
    out = tmp_path / "out"
    run_dir = out / "train" / "clip"
    argv = command(2, arguments(demo_inputs, train_folder, out, "--workers", 1))
    seconds = {}

    # SIGKILL of rank 1 only: torchrun stops rank 0, which says so in one line.
    with started(argv, tmp_path / "rank-killed") as job:
        before, seconds["SIGKILL of rank 1"] = fault(
            job, run_dir, lambda job: os.kill(ranks(job)[1], signal.SIGKILL), INTERRUPTED)
    assert job.process.returncode != 0 and untouched(before, run_dir)
    assert job.stderr().count(INTERRUPTED) == 1
    assert "rank      : 0 (local_rank: 0)\n  exitcode  : 143" in job.stderr()  # torchrun's report

    # SIGTERM of every process, as Slurm's preemption: one line, from the main process only.
    done = len(parts(run_dir))
    with started(argv, tmp_path / "preempted") as job:
        before, seconds["SIGTERM of every process (Slurm)"] = fault(
            job, run_dir, lambda job: signal_all(job, signal.SIGTERM), INTERRUPTED)
    assert job.stderr().count(INTERRUPTED) == 1  # torchrun's own traceback follows: it was signalled
    assert f"resuming: {done} of 9 chunks done ({2 * done} images), computing {9 - done} on 2 processes" \
        in (job.log_dir / "stdout.txt").read_text()
    assert untouched(before, run_dir)

    # SIGKILL of torchrun's agent (an OOM killer, a lost allocation): its processes end with it.
    with started(argv, tmp_path / "launcher-killed") as job:
        before, seconds["SIGKILL of the torchrun agent"] = fault(job, run_dir, lambda job: job.process.kill())
    assert untouched(before, run_dir)

    # A part cut short and one with a flipped byte, then two jobs at once on the folder, at once.
    truncated, flipped, *_ = parts(run_dir)
    truncated.write_bytes(truncated.read_bytes()[:500])
    data = bytearray(flipped.read_bytes())
    data[len(data) // 3] ^= 0x01
    flipped.write_bytes(bytes(data))
    first, second = tmp_path / "first", tmp_path / "second"
    with started(argv, first) as one, started(argv, second) as other:
        jobs, begun, refused = [one, other], time.monotonic(), {}
        while all(job.process.poll() is None for job in jobs):  # until one stops
            for job in jobs:
                job.watch(until=lambda: True)  # records the processes of both
                if job not in refused and "is in use:" in job.stderr():
                    refused[job] = time.monotonic() - begun
            assert time.monotonic() - begun < 240, "neither job stopped"
            time.sleep(0.02)
        winner, loser = jobs if other.process.poll() is not None else jobs[::-1]
        stopped = time.monotonic()
        gone = loser.seconds_until_all_gone(stopped)
        seconds["a second job on the folder (from its start)"] = (stopped - begun + gone, stopped - begun,
                                                                  refused[loser])
        winner.watch(until=lambda: ranks(winner))
        holder = ranks(winner)[0]  # the winner's main process holds the lock
        assert winner.process.wait(timeout=240) == 0, winner.stderr()
    assert (f"{run_dir} is in use: another job (host {socket.gethostname()}, pid {holder}, since "
            in loser.stderr() and "wait for it to end, or pass another --out or --run-name." in loser.stderr())
    for damaged in (truncated, flipped):
        assert f"note: the part {damaged} is damaged (" in winner.stderr()
    assert (run_dir / "predictions.npz").read_bytes() == reference_cache
    assert not (run_dir / "parts").exists() and not list(run_dir.parent.glob(".*.lock"))
    for case, (ranks_gone, all_gone, said) in seconds.items():
        print(f"{case}: its processes gone {ranks_gone:.2f} s after it, torchrun {all_gone:.2f} s"
              + ("" if said is None else f", the line {said:.2f} s"))
