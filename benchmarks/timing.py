"""Timing helpers shared by the benchmark scripts."""
import functools
import time

# The deadline of every command a benchmark starts and waits for: far above the longest that
# RESULTS.md measures (tens of minutes), so that only a hung command meets it.
COMMAND_DEADLINE_SECONDS = 6 * 3600


class StageTimer:
    """Wraps functions so that the wall time of each outermost call is recorded under a label
    (nested timed calls, e.g. arg-max inside the centroids, count towards their caller)."""

    def __init__(self):
        self.stages = []
        self.depth = 0

    def wrap(self, owner, name, label):
        original = getattr(owner, name)

        @functools.wraps(original)
        def timed(*args, **kwargs):
            self.depth += 1
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.depth -= 1
                if self.depth == 0:
                    self.stages.append((label(*args) if callable(label) else label,
                                        time.perf_counter() - start))

        setattr(owner, name, timed)
