#!/usr/bin/env python3
"""How long CAP's Algorithm 1 (concepts.detect_mismatched_classes) takes at ImageNet100's size.

Generates ImageNet100-like unit image features (--classes x --images-per-class, dimension
--dimension, around class centres that share a common direction, as CLIP's do) and class text
embeddings near their centres, except for --planted classes whose text embedding points
elsewhere; then times the detection (best of --repeats) and prints what it found.

    python benchmarks/bench_concepts.py                 # 5,000 x 1,024, 100 classes
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analysis import concepts  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--classes", type=int, default=100, help="classes")
    parser.add_argument("--images-per-class", type=int, default=50, help="images of each class")
    parser.add_argument("--dimension", type=int, default=1024, help="embedding dimension (RN50: 1,024)")
    parser.add_argument("--planted", type=int, default=3, help="classes whose text misses their images")
    parser.add_argument("--n-init", type=int, default=concepts.DETECTION_N_INIT,
                        help="k-means++ starts of the first clustering")
    parser.add_argument("--fresh", action="store_true",
                        help="start every clustering afresh instead of from the previous centres")
    parser.add_argument("--repeats", type=int, default=2, help="timed detections")
    return parser.parse_args(argv)


def planted_features(args, seed=0):
    """(image features [N, D], text features [K, D], labels [N], planted classes)."""
    rng = np.random.default_rng(seed)
    shared = rng.standard_normal(args.dimension)
    centres = concepts.unit_rows(rng.standard_normal((args.classes, args.dimension)) + 1.5 * shared)
    labels = np.repeat(np.arange(args.classes), args.images_per_class)
    noise = rng.standard_normal((len(labels), args.dimension)) * 0.5 / np.sqrt(args.dimension)
    images = concepts.unit_rows(centres[labels] + noise)
    texts = concepts.unit_rows(centres + rng.standard_normal(centres.shape) * 0.3 / np.sqrt(args.dimension))
    planted = rng.choice(args.classes, args.planted, replace=False)
    texts[planted] = concepts.unit_rows(rng.standard_normal((args.planted, args.dimension)) + 1.5 * shared)
    return images.astype(np.float32), texts.astype(np.float32), labels, np.sort(planted)


def main(argv=None):
    args = parse_args(argv)
    images, texts, labels, planted = planted_features(args)
    predicted, confidence = concepts.pseudo_labels_and_confidence(100 * images @ texts.T)
    print(f"{len(images)} images x {args.dimension} dimensions, {args.classes} classes; planted "
          f"{planted.tolist()}; zero-shot accuracy {np.mean(predicted == labels):.3f}")
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        found = concepts.detect_mismatched_classes(images, texts, predicted, confidence,
                                                   n_init=args.n_init, warm_start=not args.fresh)
        times.append(time.perf_counter() - start)
    print(f"detection ({'fresh' if args.fresh else 'warm-started'} clusterings, n_init "
          f"{args.n_init}): best {min(times):.1f} s [{', '.join(f'{t:.1f}' for t in times)}]; "
          f"found {found.mismatched.tolist()}, of the remaining {found.remaining_classes.tolist()}")


if __name__ == "__main__":
    main()
