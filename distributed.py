"""This process's place in the job: its share of the machine's CPUs (and, under torchrun, its rank).

stdlib only: every process imports it before anything heavy.
"""
import os


def usable_cpus():
    """CPUs this process may run on: its affinity mask where the OS has one (a Slurm job's
    allocation, taskset), else every CPU."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
