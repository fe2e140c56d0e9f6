#!/usr/bin/env python3
"""What torchrun buys and what merging costs.

- processes: the same `starter.py --model clip` over the same photo-like JPEGs (random weights
  in the real format) under `torchrun --standalone --nproc-per-node P` for each P of
  --processes, each process with --workers and --threads of its own (1 and 1 by default, so
  that P processes use about 2P cores); prints each run's inference rate (from its closing
  line: images/s in all and per process), the ratio to the first P, and whether every run's
  predictions.npz is byte-identical to the first's;
- merge: the parts of a run of --merge-images images x --merge-classes classes (ImageNet-1k's
  training set by default: 1,281,167 x 1,000, 5.1 GB of float32 logits) written with random
  logits, then merged into predictions.npz: seconds, and the merge's peak anonymous memory
  (RssAnon sampled every 0.05 s), which must not grow with the number of images.

    python benchmarks/bench_distributed.py                      # 400 images; 1.28M-image merge
    python benchmarks/bench_distributed.py --images 40 --merge-images 20000   # a quick look
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

from inference import distributed  # noqa: E402
from bench_inference import cpu_model, write_photo_like_class  # noqa: E402
from inference.chunk_store import ChunkStore, Part  # noqa: E402
from inference.config import DEFAULT_CHUNK_IMAGES  # noqa: E402
from timing import COMMAND_DEADLINE_SECONDS  # noqa: E402

IMAGENET_TRAIN_IMAGES = 1_281_167
RATE_LINE = re.compile(r"inference: (\d+) images in ([\d.]+) s, ([\d.]+) images/s in all, ([\d.]+) per process")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--images", type=int, default=400, help="photo-like JPEGs to run over")
    parser.add_argument("--classes", type=int, default=4, help="class folders they are spread over")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2],
                        help="torchrun --nproc-per-node values to compare, the first the baseline")
    parser.add_argument("--workers", type=int, default=1, help="--workers of each process")
    parser.add_argument("--threads", type=int, default=1, help="--threads of each process")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="--device of every run (cuda: one GPU per process)")
    parser.add_argument("--batch-size", type=int, default=16, help="--batch-size of every run")
    parser.add_argument("--chunk-size", type=int, default=32,
                        help="--chunk-size of every run: small, so that a few hundred images make "
                             "enough chunks for every process")
    parser.add_argument("--merge-images", type=int, default=IMAGENET_TRAIN_IMAGES,
                        help="images of the merged run (0: skip the merge)")
    parser.add_argument("--merge-classes", type=int, default=1000, help="classes of the merged run")
    return parser.parse_args(argv)


def peak_anonymous_memory(process, peak):
    """Sample the process's RssAnon (kB) into peak[0] until it ends."""
    while process.poll() is None:
        try:
            status = Path(f"/proc/{process.pid}/status").read_text()
            peak[0] = max(peak[0], int(re.search(r"RssAnon:\s+(\d+)", status).group(1)))
        except (OSError, AttributeError):
            pass
        time.sleep(0.05)


def write_inputs(folder, args):
    from demo import synthetic
    wnids = synthetic.imagenet100_wnids()[:args.classes]
    per_class = -(-args.images // len(wnids))
    for index, wnid in enumerate(wnids):
        write_photo_like_class((folder / "data" / "val" / wnid, index, per_class, 0))
    return folder / "data", synthetic.write_clip_weights(folder / "clip.pt")


def benchmark_processes(args, scratch):
    data, weights = write_inputs(scratch, args)
    print(f"processes: {args.images} photo-like JPEGs, {args.classes} classes, clip RN50 (random "
          f"weights), batch {args.batch_size}, chunks of {args.chunk_size}, per process {args.workers} worker(s) and "
          f"{args.threads} torch thread(s); torchrun --standalone, gloo")
    baseline, first_cache = None, None
    for processes in args.processes:
        out = scratch / f"out-{processes}"
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   f"--nproc-per-node={processes}", str(PROJECT_DIR / "starter.py"), "--model", "clip",
                   "--clip-weights", str(weights), "--prompts", "single", "--data", str(data),
                   "--out", str(out), "--device", args.device, "--batch-size", str(args.batch_size),
                   "--chunk-size", str(args.chunk_size),
                   "--workers", str(args.workers), "--threads", str(args.threads)]
        result = subprocess.run(command, capture_output=True, text=True, cwd=PROJECT_DIR,
                                env={**os.environ, "TQDM_DISABLE": "1"}, timeout=COMMAND_DEADLINE_SECONDS)
        if result.returncode != 0:
            raise RuntimeError(result.stderr)
        images, seconds, total, per_process = RATE_LINE.search(result.stdout).groups()
        cache = (out / "clip" / "predictions.npz").read_bytes()
        baseline = baseline or float(total)
        first_cache = first_cache or cache
        print(f"  {processes} process(es): {images} images in {seconds} s, {total} images/s in all, "
              f"{per_process} per process; x{float(total) / baseline:.2f} of {args.processes[0]}; "
              f"cache {'identical to' if cache == first_cache else 'DIFFERENT from'} the first run's")


def write_random_parts(store, num_classes):
    rng = np.random.default_rng(0)
    for chunk in range(store.num_chunks):
        images = store.images(chunk)
        store.write(chunk, Part(
            logits=rng.standard_normal((len(images), num_classes), dtype=np.float32),
            indices=np.arange(images.start, images.stop), labels=np.arange(len(images)) % num_classes,
            unreadable={}))


MERGE_SCRIPT = """
import json, sys, time
sys.path.insert(0, {project!r})
from inference.chunk_store import ChunkStore
store = ChunkStore({run_dir!r}, "benchmark", {images}, {chunk}, {{}})
start = time.perf_counter()
store.merge({cache!r}, [f"c/{{i:07d}}.JPEG" for i in range({images})],
            [f"n{{k:08d}}" for k in range({classes})], [f"class {{k}}" for k in range({classes})], {{}})
print(json.dumps(time.perf_counter() - start))
"""


def benchmark_merge(args, scratch):
    run_dir = scratch / "merged"
    store = ChunkStore(run_dir, "benchmark", args.merge_images, DEFAULT_CHUNK_IMAGES, {})
    start = time.perf_counter()
    write_random_parts(store, args.merge_classes)
    logits_gb = args.merge_images * args.merge_classes * 4 / 1e9
    print(f"merge: {store.num_chunks} parts of {args.merge_images} x {args.merge_classes} "
          f"({logits_gb:.2f} GB of logits) written in {time.perf_counter() - start:.1f} s")
    script = MERGE_SCRIPT.format(project=str(PROJECT_DIR), run_dir=str(run_dir), images=args.merge_images,
                                 chunk=DEFAULT_CHUNK_IMAGES, cache=str(run_dir / "predictions.npz"),
                                 classes=args.merge_classes)
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    peak = [0]
    sampler = threading.Thread(target=peak_anonymous_memory, args=(process, peak))
    sampler.start()
    output, _ = process.communicate(timeout=COMMAND_DEADLINE_SECONDS)
    sampler.join()
    if process.returncode != 0:
        raise RuntimeError("the merge failed")
    seconds = json.loads(output.splitlines()[-1])
    print(f"  merged into predictions.npz ({(run_dir / 'predictions.npz').stat().st_size / 1e9:.2f} GB)"
          f" in {seconds:.1f} s; peak anonymous memory of the merging process "
          f"{peak[0] / 1024:.0f} MB")


def main(argv=None):
    args = parse_args(argv)
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores ({distributed.usable_cpus()} usable)")
    with tempfile.TemporaryDirectory(prefix="bench-distributed-") as scratch:
        scratch = Path(scratch)
        if args.images:
            benchmark_processes(args, scratch)
        if args.merge_images:
            benchmark_merge(args, scratch)


if __name__ == "__main__":
    main()
