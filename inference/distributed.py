"""This process's place in the job: its rank under torchrun, and its share of the node's CPUs.

torchrun (one node: `--standalone --nproc-per-node G`; several: its rendezvous options) starts
the processes and sets RANK, WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE; without torchrun this
is the only process. The processes share no work list and exchange nothing inside the inference
loop: each takes its own chunks (chunk_store.py). torch.distributed (gloo: CPU only, so it
works with or without GPUs) is used for its rendezvous and for barriers before the loop only.
stdlib only at import: every process imports this before anything heavy.
"""
import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from datetime import timedelta

# How long a process waits for the others at a barrier (the first being the main process's model
# build: CLIP's text classifier at 1,000 classes x 80 prompts takes minutes on a CPU the first
# time, then comes from OUT/cache), and for the rendezvous: a dead peer holds the others no longer.
DEFAULT_BARRIER_SECONDS = 600

# A process ends with its parent, however the parent ends (SIGKILL included, with no chance to
# stop it): Linux kills it at once (PR_SET_PDEATHSIG); elsewhere, or where the parent ended
# before that was set, a thread notices within PARENT_POLL_SECONDS.
PARENT_POLL_SECONDS = 0.5
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def usable_cpus():
    """CPUs this process may run on: its affinity mask where the OS has one (a Slurm job's
    allocation, taskset), else every CPU."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@dataclass(frozen=True)
class Place:
    """Where this process stands: rank of world_size in all, local_rank of local_world_size on
    this node."""
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def is_main(self):
        """The process that merges the parts, analyses and prints."""
        return self.rank == 0

    @property
    def cpus(self):
        """This process's share of the node's usable CPUs (at least one): the default of its
        data-loading workers and of its torch threads, so that 8 processes on 64 cores start 8
        workers each, not 64."""
        return max(1, usable_cpus() // self.local_world_size)


def current_place(environ=os.environ):
    """The Place torchrun's environment variables describe (one process without them)."""
    names = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")
    if "WORLD_SIZE" not in environ:
        return Place()
    return Place(*(int(environ.get(name, default)) for name, default in zip(names, (0, 1, 0, 1))))


def end_with_parent(parent_pid, spawned_by_main_thread=True):
    """End this process when `parent_pid`, its parent, ends."""
    if spawned_by_main_thread and sys.platform.startswith("linux"):
        # The kernel sends the signal when the *thread* that spawned this process ends: only the
        # main thread lives as long as the parent.
        with contextlib.suppress(OSError, AttributeError):  # no libc prctl: the thread below
            ulong = ctypes.c_ulong
            ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, ulong(signal.SIGKILL), ulong(0), ulong(0),
                                    ulong(0))
    threading.Thread(target=_watch_parent, args=(parent_pid,), name="watch parent",
                     daemon=True).start()


def _watch_parent(parent_pid):
    while os.getppid() == parent_pid:  # an orphan gets a new parent (init, or a subreaper)
        time.sleep(PARENT_POLL_SECONDS)
    os._exit(1)  # also when the parent ended before prctl above


def helper_follows_parent(parent_pid, spawned_by_main_thread=True):
    """For a helper process (figure or data-loading worker): Ctrl-C reaches the whole process
    group, and so may SIGTERM (Slurm signals every process of a job), so it leaves the decision
    to its parent, and ends with it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    end_with_parent(parent_pid, spawned_by_main_thread)


def follow_launcher(place):
    """Under torchrun, end this process with its launcher, torchrun's agent (its parent): killed
    by any signal (a node's OOM killer, a lost allocation), it cannot stop its processes, which
    would run on as orphans and write into the run folder of the job that replaces it. The
    finished parts stay: each was written whole."""
    if place.world_size > 1:
        end_with_parent(os.getppid())


@contextlib.contextmanager
def ended_by_signals():
    """Inside the block, SIGTERM and SIGINT end the process at once, by their default action: a
    process blocked in torch.distributed's C++ (a barrier, the rendezvous) runs no Python signal
    handler until it returns, and writes nothing meanwhile."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {number: signal.signal(number, signal.SIG_DFL)
                for number in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def exit_at_once(place, code):
    """Under torchrun, end this process now with `code`, once what it printed is out: after an
    interrupt or an error its interpreter's and torch's teardown took 4-7 s more here, past the
    5 s a preempted job's processes have to end in, and nothing is left to write (each part was
    written whole, the lock was let go)."""
    if place.world_size > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def start(place, barrier_seconds=DEFAULT_BARRIER_SECONDS):
    """Join the job's process group (gloo) when there is more than one process; its barriers
    give up after `barrier_seconds`."""
    if place.world_size > 1:
        import torch.distributed as dist
        if not dist.is_initialized():
            with ended_by_signals():
                dist.init_process_group("gloo", timeout=timedelta(seconds=barrier_seconds))


def wait_for_all(place):
    """Barrier of every process of the job (nothing to wait for alone)."""
    if place.world_size > 1:
        import torch.distributed as dist
        with ended_by_signals():
            dist.barrier()


def stop(place):
    if place.world_size > 1:
        import torch.distributed as dist
        if dist.is_initialized():
            dist.destroy_process_group()
