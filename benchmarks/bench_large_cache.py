#!/usr/bin/env python3
"""Time and memory of the analysis of an ImageNet-1k training-set sized cache: the homework's
Figure 2 at full size, 1,281,167 images x 1,000 classes (a 5 GB predictions.npz).

It writes a SIMULATED clip cache block by block (meta "simulated": true): CLIP-like logits,
100 x the cosine between unit image embeddings and the class text embeddings of simulation.py
(dimension 128, classes close in ImageNet-1k's index resemble each other, a hub direction
makes some classes over-predicted), about 60% top-1 like CLIP RN50, with ImageNet's training
set's 732 to 1,300 images per class. Then it runs, each as a user would, as a subprocess
`python starter.py ... --out OUT`: --model clip --from-cache, --model clip-la, --model clip-pm
and --report, and prints per command its wall time and its peak anonymous memory (RssAnon of
/proc/<pid>/status sampled every 0.1 s, alone and with its figure workers). The memory-mapped
cache's pages are file-backed, so they are not in RssAnon.

Targets on a 2-core CPU: --from-cache <= 5 min and <= 2 GB, clip-pm <= 5 min, --report <= 1 min.

    python benchmarks/bench_large_cache.py                    # full size, OUT under /tmp, removed
    python benchmarks/bench_large_cache.py --images 200000 --project /tmp/before   # another checkout
"""
import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))

from runs import cache  # noqa: E402
from timing import COMMAND_DEADLINE_SECONDS  # noqa: E402
from sources import classes  # noqa: E402
from demo import simulation  # noqa: E402

IMAGENET_TRAIN_IMAGES = 1_281_167
CLASS_SIZES = (732, 1300)  # fewest and most training images of an ImageNet-1k class
DIMENSION = 128
SIGNAL, HUB_WEIGHT = 0.75, 0.2  # about 60% top-1 and a 5:1 spread of predictions per class
COMMANDS = {  # label: starter.py arguments (besides --out)
    "clip --from-cache": ["--model", "clip", "--from-cache"],
    "clip-la": ["--model", "clip-la"],
    "clip-pm": ["--model", "clip-pm"],
    "report": ["--report"],
}
SAMPLE_SECONDS = 0.1
TARGETS = {"clip --from-cache": (300, 2.0), "clip-pm": (300, None), "report": (60, None)}  # s, GB


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--images", type=int, default=IMAGENET_TRAIN_IMAGES)
    parser.add_argument("--classes", type=int, default=1000,
                        help="the first classes of ImageNet-1k (sorted by wnid)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--project", type=Path, default=PROJECT_DIR,
                        help="the checkout whose starter.py runs (e.g. a worktree of an older "
                             "commit); the cache is written by this one")
    parser.add_argument("--commands", nargs="+", choices=tuple(COMMANDS), default=list(COMMANDS))
    parser.add_argument("--keep", type=Path,
                        help="write OUT here and keep it, instead of a temporary folder under /tmp")
    return parser.parse_args(argv)


def class_sizes(num_images, num_classes, rng):
    """Images per class, between ImageNet's fewest and most in proportion, summing to num_images."""
    weights = rng.uniform(*CLASS_SIZES, num_classes)
    sizes = np.floor(weights / weights.sum() * num_images).astype(np.int64)
    sizes[:num_images - sizes.sum()] += 1
    return sizes


def logit_blocks(labels, text, hub, difficulty, seed):
    """The float32 logits [N, K], row block by row block, each from its own seeded generator."""
    for index, rows in enumerate(cache.row_blocks(len(labels), len(text))):
        rng = np.random.default_rng([seed, index])
        block_labels = labels[rows]
        noise = rng.standard_normal((len(block_labels), DIMENSION), dtype=np.float32) / np.sqrt(DIMENSION)
        yield simulation.simulated_logits(text, hub, block_labels,
                                          (SIGNAL * difficulty[block_labels]).astype(np.float32),
                                          HUB_WEIGHT, noise)


def write_simulated_cache(path, num_images, num_classes, seed):
    rng = np.random.default_rng(seed)
    wnids = sorted(classes.imagenet1k_wnids())[:num_classes]
    indices, names = classes.describe_classes(wnids)
    text, hub = (array.astype(np.float32) for array in simulation.text_embeddings(rng, np.array(indices), DIMENSION))
    difficulty = np.exp(-simulation.DIFFICULTY_SPREAD * rng.standard_normal(num_classes))
    labels = np.repeat(np.arange(num_classes), class_sizes(num_images, num_classes, rng))
    paths = np.array([f"{wnids[label]}/{wnids[label]}_{index}.JPEG" for index, label in enumerate(labels)])
    meta = {"model": "clip", "simulated": True, "seed": seed, "weights": "none (simulated logits)",
            "data": f"simulated: {num_images:,} images of {num_classes:,} ImageNet-1k classes "
                    f"(bench_large_cache.py)"}
    cache.write_predictions(path, logit_blocks(labels, text, hub, difficulty, seed),
                            (num_images, num_classes), labels, paths, np.array(wnids), np.array(names), meta)


def anonymous_kb(pid):
    """RssAnon of a process in kB (0 once it has ended)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("RssAnon:"))
    except (OSError, StopIteration):
        return 0


def descendants(pid):
    """The process ids below `pid` (its figure workers and their resource tracker)."""
    found, queue = [], [pid]
    while queue:
        parent = queue.pop()
        try:
            tasks = Path(f"/proc/{parent}/task").iterdir()
            children = [int(child) for task in tasks for child in (task / "children").read_text().split()]
        except OSError:
            continue
        found += children
        queue += children
    return found


def measure(arguments, cwd):
    """(seconds, peak RssAnon of the process in GB, peak of it and its descendants in GB)."""
    start = time.perf_counter()
    # Its output goes to a file: into a pipe nobody reads while sampling, a command that prints
    # more than the pipe holds (64 KB: progress bars) would block, and this loop wait forever.
    with tempfile.TemporaryFile("w+") as printed:
        process = subprocess.Popen([sys.executable, *arguments], cwd=cwd, stdout=printed,
                                   stderr=subprocess.STDOUT, text=True)
        own_peak = tree_peak = 0
        while process.poll() is None:
            if time.perf_counter() - start > COMMAND_DEADLINE_SECONDS:
                process.kill()
                raise RuntimeError(f"{' '.join(arguments)} still running after {COMMAND_DEADLINE_SECONDS} s")
            own = anonymous_kb(process.pid)
            own_peak = max(own_peak, own)
            tree_peak = max(tree_peak, own + sum(anonymous_kb(child) for child in descendants(process.pid)))
            time.sleep(SAMPLE_SECONDS)
        seconds = time.perf_counter() - start
        printed.seek(0)
        output = printed.read()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(arguments)} exited with {process.returncode}:\n{output}")
    return seconds, own_peak / 2 ** 20, tree_peak / 2 ** 20


def verdict(label, seconds, gigabytes):
    limit_seconds, limit_gigabytes = TARGETS.get(label, (None, None))
    within = ((limit_seconds is None or seconds <= limit_seconds)
              and (limit_gigabytes is None or gigabytes <= limit_gigabytes))
    if limit_seconds is None:
        return ""
    target = f"<= {limit_seconds / 60:g} min" + (f", <= {limit_gigabytes:g} GB" if limit_gigabytes else "")
    return f"{'within' if within else 'OVER'} {target}"


def main(argv=None):
    args = parse_args(argv)
    out = args.keep or Path(tempfile.mkdtemp(prefix="bench-large-cache-", dir="/tmp"))
    try:
        start = time.perf_counter()
        write_simulated_cache(out / "clip" / "predictions.npz", args.images, args.classes, args.seed)
        size = (out / "clip" / "predictions.npz").stat().st_size
        print(f"SIMULATED cache: {args.images:,} images x {args.classes:,} classes, {size / 1e9:.2f} GB, "
              f"written in {time.perf_counter() - start:.1f} s; starter.py of {args.project}")
        print(f"{'command':<20} {'wall':>9} {'peak RssAnon':>13} {'with workers':>13}")
        starter = str(args.project / "starter.py")
        for label in args.commands:
            seconds, own, tree = measure([starter, *COMMANDS[label], "--out", str(out)], args.project)
            print(f"{label:<20} {seconds:8.1f}s {own:11.2f} GB {tree:11.2f} GB  {verdict(label, seconds, own)}",
                  flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
