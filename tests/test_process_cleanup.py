"""Nothing left behind: a command's helper processes (figure workers, multiprocessing's resource
tracker) end with it, however it ends. SIGTERM (Slurm's preemption, `kill`) ends it as Ctrl-C
does: the figures in progress finished, one line, exit code 143 (SIGTERM's, where Ctrl-C's is 130). SIGKILL gives it no chance to
clean up: the workers end by themselves, and the tracker with them."""
import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from runs import cache
from inference import distributed
from analysis import figure_workers
from demo import simulation
from conftest import PROJECT_DIR, figure_worker_processes

pytestmark = [
    pytest.mark.slow,  # commands in subprocesses, on 100 classes
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads processes from /proc"),
    pytest.mark.skipif(distributed.usable_cpus() < 2, reason="figure workers need 2 CPUs"),
]

INTERRUPTED = "interrupted: outputs already written are complete; nothing is half-written"
# Hang guards only, never a measure of speed (the times are printed with -s): on a quiet machine
# the helpers are gone < 0.1 s after the command (a thread's workers: within their 0.5 s poll).
GONE_WITHIN_SECONDS = 120
STARTED_WITHIN_SECONDS = 300
ENDS_WITHIN_SECONDS = 300
PR_GET_PDEATHSIG = 2  # <linux/prctl.h>


def process_table():
    """{pid: (parent pid, state, start time)} of every process now."""
    table = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as file:
                    stat = file.read()
            except OSError:  # it ended meanwhile
                continue
            fields = stat[stat.rindex(")") + 2:].split()  # the command name may hold spaces
            table[int(name)] = (int(fields[1]), fields[0], fields[19])
    return table


def descendants(pid, table):
    children = {child for child, (parent, _, _) in table.items() if parent == pid}
    return children.union(*(descendants(child, table) for child in children))


def command_line(pid):
    with contextlib.suppress(OSError):
        with open(f"/proc/{pid}/cmdline", "rb") as file:
            return file.read().replace(b"\0", b" ").decode(errors="replace")
    return ""


class ProcessTree:
    """A process started by the test, and every descendant it has had while watched: {pid: (start
    time, command line)}, a pid's start time telling it from a later process given the same pid."""

    def __init__(self, argv, log_dir, **popen_kwargs):
        self.log_dir = log_dir
        with open(log_dir / "stdout.txt", "wb") as out, open(log_dir / "stderr.txt", "wb") as err:
            # files, not pipes: a pipe stays open, and a reader waits, as long as any helper lives
            self.process = subprocess.Popen(argv, stdout=out, stderr=err, **popen_kwargs)
        self.seen = {}

    def watch(self, until, timeout=STARTED_WITHIN_SECONDS):
        """Record the descendants until `until()` holds; fail if the process ends first."""
        deadline = time.monotonic() + timeout
        while True:
            table = process_table()
            for pid in descendants(self.process.pid, table):
                line = command_line(pid) or self.seen.get(pid, ("", ""))[1]  # exec changes it
                self.seen[pid] = (table[pid][2], line)
            if until():
                return
            assert self.process.poll() is None, f"it ended first:\n{self.stderr()}"
            assert time.monotonic() < deadline, f"not within {timeout} s"
            time.sleep(0.01)

    def workers(self):
        return [pid for pid, (_, line) in self.seen.items() if "spawn_main" in line]

    def alive(self):
        """The recorded descendants still running (zombies hold no memory, and no one may reap
        them where process 1 does not)."""
        table = process_table()
        return {pid: line for pid, (start, line) in self.seen.items()
                if pid in table and table[pid][2] == start and table[pid][1] not in "ZX"}

    def seconds_until_all_gone(self, since):
        while self.alive():
            assert time.monotonic() - since < GONE_WITHIN_SECONDS, f"still running: {self.alive()}"
            time.sleep(0.01)
        return time.monotonic() - since

    def stderr(self):
        return (self.log_dir / "stderr.txt").read_text()

    def kill_the_rest(self):
        """After a failure: end the processes this test started, by pid."""
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        self.process.wait()
        for pid in self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def process_tree(argv, log_dir, **popen_kwargs):
    tree = ProcessTree(argv, log_dir, **popen_kwargs)
    try:
        yield tree
    finally:
        tree.kill_the_rest()


@pytest.fixture(scope="module")
def simulated_cache(tmp_path_factory):
    """predictions.npz of the simulated clip: 100 classes, whose figures take seconds. Without
    its features: Algorithm 1 on them would only delay the figures by ~20 s."""
    path = tmp_path_factory.mktemp("cache") / "predictions.npz"
    clip = simulation.simulated_predictions()["clip"]
    clip.image_features = clip.text_features = None
    cache.save_predictions(path, clip)
    return path


def start_from_cache(out, simulated_cache):
    """`--model clip --from-cache` on the simulated cache, as a command (4 figure workers at most,
    the default), in its own process group."""
    (out / "clip").mkdir(parents=True)
    (out / "clip" / "predictions.npz").write_bytes(simulated_cache.read_bytes())
    log_dir = out.parent / f"{out.name}-logs"
    log_dir.mkdir()
    return process_tree([sys.executable, str(PROJECT_DIR / "starter.py"), "--model", "clip",
                         "--from-cache", "--out", str(out)], log_dir, cwd=PROJECT_DIR,
                        start_new_session=True)


def rendering(run_dir):
    """Whether a figure is being written: its temporary file exists."""
    return lambda: any(run_dir.glob(".*.png.*.tmp"))


def interrupt_while_rendering(run, run_dir, send):
    run.watch(until=rendering(run_dir))
    assert len(run.workers()) >= 2, run.seen  # the figures are rendered in worker processes
    assert len(run.seen) > len(run.workers()), run.seen  # and the resource tracker runs too
    sent = time.monotonic()
    send(run.process.pid)
    return sent


def test_sigterm_ends_the_command_as_ctrl_c_and_leaves_no_process(tmp_path, simulated_cache):
    out = tmp_path / "out"
    with start_from_cache(out, simulated_cache) as run:
        # Slurm signals every process of the job (its own group here); `kill PID` the command
        # only, which is the same to it: the workers leave the decision to it either way.
        sent = interrupt_while_rendering(run, out / "clip",
                                         lambda pid: os.killpg(pid, signal.SIGTERM))
        assert run.process.wait(timeout=ENDS_WITHIN_SECONDS) == 143, run.stderr()  # it finishes the figures begun
        ended = time.monotonic()
        seconds = run.seconds_until_all_gone(ended)
    print(f"SIGTERM: the command ended {ended - sent:.2f} s after it, its helpers {seconds:.2f} s "
          "later")
    lines = run.stderr().splitlines()  # starter.main's one line, as on Ctrl-C
    assert len(lines) == 1 and lines[0].startswith(INTERRUPTED), lines
    names = sorted(path.name for path in (out / "clip").iterdir())
    assert not [name for name in names if name.startswith(".")], names  # no temporary file
    assert "metrics.json" in names and any(name.endswith(".png") for name in names), names
    assert (out / "clip" / "predictions.npz").read_bytes() == simulated_cache.read_bytes()
    for name in names:  # every file written is whole
        data = (out / "clip" / name).read_bytes()
        if name.endswith(".png"):
            assert data.startswith(b"\x89PNG\r\n\x1a\n") and data.endswith(b"IEND\xaeB`\x82"), name
        elif name.endswith(".json"):
            json.loads(data)


def test_sigkill_leaves_no_process(tmp_path, simulated_cache):
    out = tmp_path / "out"
    with start_from_cache(out, simulated_cache) as run:
        sent = interrupt_while_rendering(run, out / "clip",
                                         lambda pid: os.kill(pid, signal.SIGKILL))
        assert run.process.wait(timeout=ENDS_WITHIN_SECONDS) == -signal.SIGKILL
        seconds = run.seconds_until_all_gone(sent)
    print(f"SIGKILL: all its processes gone after {seconds:.2f} s")


def parent_death_signal():
    value = ctypes.c_int()
    ctypes.CDLL(None).prctl(PR_GET_PDEATHSIG, ctypes.byref(value))
    return value.value


def test_workers_spawned_by_the_main_thread_are_killed_by_the_kernel_with_it():
    with figure_worker_processes():
        pool = figure_workers.start_figure_processes()
        assert pool.submit(parent_death_signal).result() == signal.SIGKILL


# Workers spawned by another thread: the kernel's parent-death signal would kill them when that
# thread ends, so they watch their parent themselves, as on systems without prctl.
SPAWNED_BY_A_THREAD = """
import os, sys, threading, time
sys.path.insert(0, {project!r})
from analysis import figure_workers

if __name__ == "__main__":
    with figure_workers.figure_processes():
        spawner = threading.Thread(target=figure_workers.start_figure_processes)
        spawner.start()
        spawner.join()
        pool = figure_workers.start_figure_processes()
        for _ in range(4):  # the workers work on after the thread that spawned them ended
            pool.submit(time.sleep, 0.1).result()
        print("ready", flush=True)
        time.sleep(60)
"""


def test_workers_spawned_by_another_thread_outlive_it_and_end_with_their_parent(tmp_path):
    script = tmp_path / "spawned_by_a_thread.py"
    script.write_text(SPAWNED_BY_A_THREAD.format(project=str(PROJECT_DIR)))
    with process_tree([sys.executable, str(script)], tmp_path, start_new_session=True) as tree:
        tree.watch(until=lambda: (tmp_path / "stdout.txt").read_text() == "ready\n")
        assert len(tree.workers()) >= 2 and len(tree.alive()) == len(tree.seen), tree.seen
        sent = time.monotonic()
        tree.process.kill()
        tree.process.wait(timeout=ENDS_WITHIN_SECONDS)
        # Gone at all: the pool's pipes would keep workers that did not watch their parent alive.
        seconds = tree.seconds_until_all_gone(sent)
    print(f"workers of a thread: gone {seconds:.2f} s after their parent")
