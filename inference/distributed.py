"""This process's place in the job: its rank under torchrun, and its share of the node's CPUs.

torchrun (one node: `--standalone --nproc-per-node G`; several: its rendezvous options) starts
the processes and sets RANK, WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE; without torchrun this
is the only process. The processes share no work list and exchange nothing inside the inference
loop: each takes its own chunks (chunk_store.py). torch.distributed (gloo: CPU only, so it
works with or without GPUs) is used for its rendezvous and for barriers before the loop only.
stdlib only at import: every process imports this before anything heavy.
"""
import os
from dataclasses import dataclass
from datetime import timedelta

# A barrier waits for the slowest process's model build (CLIP's text classifier: minutes on a CPU).
BARRIER_TIMEOUT = timedelta(hours=2)


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


def start(place):
    """Join the job's process group (gloo) when there is more than one process."""
    if place.world_size > 1:
        import torch.distributed as dist
        if not dist.is_initialized():
            dist.init_process_group("gloo", timeout=BARRIER_TIMEOUT)


def wait_for_all(place):
    """Barrier of every process of the job (nothing to wait for alone)."""
    if place.world_size > 1:
        import torch.distributed as dist
        dist.barrier()


def stop(place):
    if place.world_size > 1:
        import torch.distributed as dist
        if dist.is_initialized():
            dist.destroy_process_group()
