#!/usr/bin/env python3
"""Size and first-draw time of OUT/explorer.html at ImageNet-1k size: 1,000 classes x 50,000
images, all four runs (clip, debiaspl, clip-la, clip-pm), no thumbnails (the synthetic caches
record no image folder). Budgets: the file <= 20 MB, its first view drawn <= 3 s in headless
Chromium.

It writes clip and debiaspl caches of CLIP-like synthetic logits (bench_analysis's), analyses
them, runs clip-la and clip-pm, times write_explorer, then opens the page --repeats times, each
in a fresh headless Chromium (nothing cached: the first time a reader opens it) and once more in
the same browser (plotly.js compiled and cached: a reopening). The draw time is what the page
measures itself, from the start of navigation to the first view drawn.

    python benchmarks/bench_explorer.py
    python benchmarks/bench_explorer.py --classes 100 --keep /tmp/explorer-100   # keep the OUT
"""
import argparse
import contextlib
import io
import sys
import tempfile
import time
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))

from runs import cache  # noqa: E402
from sources import classes  # noqa: E402
import explorer  # noqa: E402
from cli.commands import for_out  # noqa: E402
import starter  # noqa: E402
from bench_analysis import CLASS_BIAS, biased_predictions, class_count, class_wnids  # noqa: E402
from explorer.browser import headless_chromium, missing_browser, open_explorer  # noqa: E402

# The runs measured: clip-ca would need image features, which the synthetic caches do not hold.
RUNS = ("clip", "debiaspl", "clip-la", "clip-pm")
BUDGET_MEGABYTES = 20.0
BUDGET_SECONDS = 3.0


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--classes", type=class_count, default=1000)
    parser.add_argument("--images-per-class", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3,
                        help="fresh browsers to open the page in (the best one is judged)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic logits")
    parser.add_argument("--keep", type=Path,
                        help="write the OUT folder here and keep it instead of a temporary one")
    return parser.parse_args(argv)


def write_runs(out, num_classes, images_per_class, seed):
    """OUT with the four runs, analysed as the commands do (their terminal text discarded)."""
    wnids = class_wnids(num_classes)
    _, names = classes.describe_classes(wnids)
    for offset, model in enumerate(CLASS_BIAS):
        cache.save_predictions(out / model / "predictions.npz", biased_predictions(
            model, wnids, names, images_per_class, seed + offset))
    with contextlib.redirect_stdout(io.StringIO()):
        for model in RUNS:
            from_cache = ["--from-cache"] if model in CLASS_BIAS else []
            if starter.main(["--model", model, *from_cache, "--out", str(out)]) != 0:
                raise RuntimeError(f"--model {model} failed")


def draw_times(page, repeats):
    """([ms to the first view in a fresh browser] x repeats, ms on reopening in the last one)."""
    fresh = []
    for _ in range(repeats):
        driver = headless_chromium()
        try:
            fresh.append(open_explorer(driver, page))
            reopened = open_explorer(driver, page)
        finally:
            driver.quit()
    return fresh, reopened


def main(argv=None):
    args = parse_args(argv)
    missing = missing_browser()
    if missing:
        sys.exit(f"bench_explorer needs headless Chromium: {missing}.")
    with contextlib.ExitStack() as stack:
        out = args.keep or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-explorer-")))
        images = args.classes * args.images_per_class
        print(f"=== {images:,} images x {args.classes:,} classes, runs {', '.join(RUNS)} ===")
        write_runs(out, args.classes, args.images_per_class, args.seed)
        start = time.perf_counter()
        page = explorer.write_explorer(out, for_out(out), thumbnails=0)
        print(f"write_explorer: {time.perf_counter() - start:.2f} s")
        megabytes = page.stat().st_size / 1e6
        print(f"explorer.html: {megabytes:.2f} MB ({'within' if megabytes <= BUDGET_MEGABYTES else 'OVER'} "
              f"the {BUDGET_MEGABYTES:g} MB budget)")
        fresh, reopened = draw_times(page, args.repeats)
        best = min(fresh) / 1000
        print(f"first view drawn, fresh browser: {best:.2f} s best "
              f"({'within' if best <= BUDGET_SECONDS else 'OVER'} the {BUDGET_SECONDS:g} s budget; "
              f"runs: {', '.join(f'{ms / 1000:.2f}' for ms in fresh)} s)")
        print(f"first view drawn, reopened in the same browser: {reopened / 1000:.2f} s")
        print(f"page in {page}")


if __name__ == "__main__":
    main()
