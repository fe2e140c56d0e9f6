#!/usr/bin/env python3
"""Time of the study across runs (study.write_study: study.pdf, study.md, runs.csv, classes.csv and
its figures) over many runs: 20 runs of 50,000 images x 1,000 classes by default. Target: <= 1
minute on a 2-core CPU.

The runs are SIMULATED (meta "simulated": true): CLIP-like logits, 100 x the cosine of unit image
embeddings and class text embeddings made as simulation.py makes them (dimension --dimension,
classes of nearby ImageNet-1k index alike, a hub direction that makes some classes
over-predicted), each run with its own seed, architecture name and class signal, and its image
features kept, so that every run has its concept analysis (why.json) as a real CLIP run has. The
runs alternate between two datasets on the first --classes ImageNet-1k classes: one with equal
class sizes, one with sizes from 1 to 3 (KL to the true distribution). --distinct runs are
analysed in this process (run_analysis.analyze, what `--from-cache` runs); the others are copies
of their folders under other names (hard links: the study reads every folder anew, so a copy
costs it what a distinct run does, while analysing 20 distinct runs would take minutes). Then
the study runs in a fresh interpreter, timed with its imports, best of --repeats.

    python benchmarks/bench_study.py                         # 20 runs of 50,000 x 1,000
    python benchmarks/bench_study.py --runs 3 --distinct 3 --images 600 --classes 12 --keep OUT
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pypdf

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))

from analysis import run_analysis  # noqa: E402
from demo import simulation  # noqa: E402
from runs import cache, descriptors  # noqa: E402
from sources import classes  # noqa: E402

TARGET_SECONDS = 60
ARCHITECTURES = ("RN50", "ViT-B-32", "ViT-B-16", "ViT-L-14", "ConvNeXt-B", "RN101")
DATASETS = (("SIMULATED-equal", (1, 1)), ("SIMULATED-uneven", (1, 3)))  # name, class size range
SIGNALS = (0.55, 0.75)  # the class signal of the least and most accurate run
HUB_WEIGHT = 0.2


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--distinct", type=int, default=4, help="runs simulated and analysed; "
                        "the others are copies of them")
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--classes", type=int, default=1000, help="the first ImageNet-1k classes")
    parser.add_argument("--dimension", type=int, default=64, help="of the simulated embeddings")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--keep", type=Path, help="write OUT here and keep it, instead of a "
                                                  "temporary folder under /tmp")
    return parser.parse_args(argv)


def class_sizes(num_images, num_classes, size_range, rng):
    """Images per class in proportion to uniform draws from size_range, summing to num_images."""
    weights = rng.uniform(*size_range, num_classes)
    sizes = np.floor(weights / weights.sum() * num_images).astype(np.int64)
    sizes[:num_images - sizes.sum()] += 1
    return sizes


def simulated_run(index, args):
    """The index-th distinct run's Predictions, its features kept."""
    rng = np.random.default_rng(index)
    dataset, size_range = DATASETS[index % len(DATASETS)]
    wnids = classes.imagenet1k_wnids()[:args.classes]
    indices, names = classes.describe_classes(wnids)
    text, hub = (array.astype(np.float32) for array in
                 simulation.text_embeddings(rng, np.array(indices), args.dimension))
    labels = np.repeat(np.arange(args.classes), class_sizes(args.images, args.classes, size_range, rng))
    difficulty = np.exp(-simulation.DIFFICULTY_SPREAD * rng.standard_normal(args.classes))
    signal = np.interp(index, [0, max(args.distinct - 1, 1)], SIGNALS)
    noise = rng.standard_normal((len(labels), args.dimension), dtype=np.float32) / np.sqrt(args.dimension)
    features = simulation.simulated_image_features(text, hub, labels,
                                                   (signal * difficulty[labels]).astype(np.float32),
                                                   HUB_WEIGHT, noise)
    architecture = ARCHITECTURES[index % len(ARCHITECTURES)]
    return cache.Predictions(
        logits=(simulation.LOGIT_SCALE * features @ text.T).astype(np.float32), labels=labels,
        paths=np.array([f"{wnids[label]}/simulated_{i:06d}.JPEG" for i, label in enumerate(labels)]),
        wnids=np.array(wnids), names=np.array(names),
        meta={"model": "clip", "architecture": architecture, "weights": f"simulated-{index}",
              "dataset": dataset, "simulated": True, "seed": index,
              "logit_scale": simulation.LOGIT_SCALE,
              "data": f"simulated: {args.images:,} images of {args.classes:,} ImageNet-1k classes "
                      "(bench_study.py)"},
        image_features=features, text_features=text)


def make_runs(out, args):
    """The run folders under `out`: --distinct analysed, the rest hard-linked copies."""
    distinct = []
    for index in range(min(args.distinct, args.runs)):
        predictions = simulated_run(index, args)
        run_dir = out / descriptors.default_run_name(
            "clip", predictions.meta["architecture"], predictions.meta["weights"],
            predictions.meta["dataset"])
        cache.save_predictions(run_dir / "predictions.npz", predictions)
        descriptors.write_descriptor(run_dir, predictions.meta)
        run_analysis.analyze(predictions, run_dir, out)
        distinct.append(run_dir)
    for copy in range(args.runs - len(distinct)):
        source = distinct[copy % len(distinct)]
        target = out / f"{source.name}-copy{copy + 1}"
        shutil.copytree(source, target, copy_function=os.link)
        (target / descriptors.RUN_FILE).unlink()  # its own, not the source's through the link
        shutil.copyfile(source / descriptors.RUN_FILE, target / descriptors.RUN_FILE)


def time_study(out):
    """Seconds of study.write_study(out) in a fresh interpreter, its imports included."""
    script = f"import sys; sys.path.insert(0, {str(PROJECT_DIR)!r}); import study; from cli.commands import for_out; study.write_study({str(out)!r}, for_out({str(out)!r}))"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", script], check=True, timeout=600)
    return time.perf_counter() - start


def main(argv=None):
    args = parse_args(argv)
    out = args.keep or Path(tempfile.mkdtemp(prefix="bench-study-", dir="/tmp"))
    try:
        start = time.perf_counter()
        make_runs(out, args)
        print(f"SIMULATED runs: {args.runs} of {args.images:,} images x {args.classes:,} classes "
              f"({min(args.distinct, args.runs)} analysed, the others copies), made in "
              f"{time.perf_counter() - start:.1f} s")
        seconds = [time_study(out) for _ in range(args.repeats)]
        pages = len(pypdf.PdfReader(out / "study.pdf").pages)
        within = "within" if min(seconds) <= TARGET_SECONDS else "OVER"
        print(f"study: {min(seconds):.1f} s (best of {', '.join(f'{s:.1f}' for s in seconds)}), "
              f"{within} <= {TARGET_SECONDS} s; study.pdf {(out / 'study.pdf').stat().st_size / 1e6:.1f} MB, "
              f"{pages} pages; classes.csv {(out / 'classes.csv').stat().st_size / 1e6:.1f} MB")
    finally:
        if args.keep is None:
            shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
