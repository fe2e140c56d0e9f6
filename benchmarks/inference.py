#!/usr/bin/env python3
"""Compare the pipeline's inference throughput with the bare model forward on the same device.

Writes a generated ImageNet100-style folder of ImageNet-sized JPEGs (500 x 375) and random
weights in the real formats, then for each model:
- pipeline: inference.predict exactly as `starter.py --model ...` runs it (DataLoader with
  workers decoding and transforming JPEGs), timing its inference.run_inference call (cold: first
  use of the model); then inference.run_inference again on the same model and dataset (warm);
- bare forward: the very module run_inference ran (eval, channels_last, inference_mode, fp16
  autocast on cuda) on one batch of already transformed images, repeated as many times as the
  pipeline has batches, after one warm-up call.
Warm pipeline and bare forward alternate for --rounds rounds and the best of each counts, so that
other load on the machine does not decide the comparison.
Target: the warm pipeline's time per image within 10% of the bare forward's.

    python benchmarks/inference.py
    python benchmarks/inference.py --device cuda --batch-size 128 --workers 8 --images 2000
"""
import argparse
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))
os.environ.setdefault("TQDM_DISABLE", "1")  # no progress bars between the numbers

import torch  # noqa: E402

import inference  # noqa: E402
import models  # noqa: E402
import starter  # noqa: E402
import synthetic  # noqa: E402

IMAGE_SIZE = (500, 375)  # the most common ImageNet validation image size
TARGET_OVERHEAD = 0.10


def parse_args(argv=None):
    defaults = starter.build_parser().parse_args(["--model", "clip"])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--images", type=int, default=200,
                        help="number of generated images, rounded up to a multiple of 100 (the "
                             "same number in each ImageNet100 class folder)")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size,
                        help="images per forward pass; the default is starter.py's")
    parser.add_argument("--workers", type=int, default=defaults.workers,
                        help="DataLoader worker processes of the pipeline; the default is starter.py's")
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto",
                        help="auto = cuda when available, as in starter.py")
    parser.add_argument("--models", nargs="+", choices=("clip", "debiaspl"),
                        default=["clip", "debiaspl"], help="models to time")
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternating warm-pipeline / bare-forward measurements per model")
    parser.add_argument("--threads", type=int,
                        help="torch.set_num_threads in the main process, which runs the forward; "
                             "unset: torch's choice, one per core")
    args = parser.parse_args(argv)
    if min(args.images, args.batch_size, args.rounds) < 1 or args.workers < 0:
        parser.error("--images, --batch-size and --rounds must be at least 1, --workers at least 0")
    return args


def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def worker_threads():
    """torch threads inside a DataLoader worker (PyTorch sets them when a worker starts)."""
    loader = torch.utils.data.DataLoader(ThreadCount(), num_workers=1)
    return int(next(iter(loader)))


class ThreadCount(torch.utils.data.Dataset):
    def __len__(self):
        return 1

    def __getitem__(self, index):
        return torch.get_num_threads()


def write_inputs(folder, num_images):
    """(data root, clip weights, DebiasPL checkpoint); the folder holds ImageNet100's 100 classes."""
    wnids = synthetic.imagenet100_wnids()
    per_class = math.ceil(num_images / len(wnids))
    synthetic.write_image_folder(folder / "data" / "val", wnids, per_class, size=IMAGE_SIZE)
    return (folder / "data", synthetic.write_clip_weights(folder / "clip.pt"),
            synthetic.write_debiaspl_checkpoint(folder / "debiaspl.pth.tar"))


class InferenceTimer:
    """Replaces inference.run_inference: times its call and keeps the arguments, to rerun it."""

    def __init__(self):
        self.original = inference.run_inference
        self.arguments = None

    def __call__(self, *arguments):
        self.arguments = arguments
        self.seconds, result = self.rerun()
        self.num_images = len(result[0])
        return result

    def rerun(self):
        start = time.perf_counter()
        result = self.original(*self.arguments)
        return time.perf_counter() - start, result


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_forward_seconds(model, images, device, repeats):
    """Seconds of `repeats` forward passes of one ready batch, after a warm-up pass."""
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.float16,
                                                enabled=device.type == "cuda"):
        model(images)  # oneDNN / cuDNN choose their kernels on the first call
        synchronize(device)
        start = time.perf_counter()
        for _ in range(repeats):
            model(images)
        synchronize(device)
    return time.perf_counter() - start


def decode_seconds(dataset, count):
    """Mean seconds to read, decode and transform one image in this process."""
    start = time.perf_counter()
    for index in range(count):
        dataset[index]
    return (time.perf_counter() - start) / count


def benchmark_model(model_name, files, args, scratch):
    data, clip_weights, checkpoint = files
    pipeline_args = starter.build_parser().parse_args([
        "--model", model_name, "--data", str(data), "--out", str(scratch / "out"),
        "--device", args.device, "--batch-size", str(args.batch_size), "--workers", str(args.workers),
        "--clip-weights", str(clip_weights), "--prompts", "single", "--checkpoint", str(checkpoint)])
    timer = InferenceTimer()
    inference.run_inference = timer
    try:
        inference.predict(pipeline_args)
    finally:
        inference.run_inference = timer.original
    model, dataset, device = timer.arguments[:3]
    num_images = timer.num_images
    batch = min(args.batch_size, num_images)
    images = torch.stack([dataset[index][0] for index in range(batch)])
    images = images.to(device, memory_format=torch.channels_last)
    repeats = math.ceil(num_images / batch)
    warm, bare = [], []
    for _ in range(args.rounds):
        warm.append(timer.rerun()[0] / num_images)
        bare.append(bare_forward_seconds(model, images, device, repeats) / (repeats * batch))
    overhead = min(warm) / min(bare) - 1
    print(f"\n{model_name}: {num_images} images, batch {batch}, best of {args.rounds} rounds "
          "(all rounds in brackets, images/s)")
    for label, per_image in (("bare forward", bare), ("pipeline, warm", warm)):
        print(f"  {label:<16} {1 / min(per_image):7.2f} images/s  ({1000 * min(per_image):.1f} ms/image)"
              f"  [{', '.join(f'{1 / seconds:.2f}' for seconds in per_image)}]")
    print(f"  pipeline, cold   {num_images / timer.seconds:7.2f} images/s  (first use of the model)")
    print(f"  pipeline overhead {100 * overhead:+.1f}% "
          f"({'within' if overhead <= TARGET_OVERHEAD else 'OVER'} the {100 * TARGET_OVERHEAD:.0f}% target)")
    print(f"  read + decode + transform, one thread: {1000 * decode_seconds(dataset, batch):.1f} ms/image")


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = models.resolve_device(args.device)
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; torch {torch.__version__}; device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""))
    print(f"batch size {args.batch_size}, DataLoader workers {args.workers}, torch threads: "
          f"main process {torch.get_num_threads()}, each worker {worker_threads()}")
    with tempfile.TemporaryDirectory(prefix="bench-inference-") as scratch:
        scratch = Path(scratch)
        files = write_inputs(scratch, args.images)
        for model_name in args.models:
            benchmark_model(model_name, files, args, scratch)


if __name__ == "__main__":
    main()
