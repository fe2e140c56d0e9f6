#!/usr/bin/env python3
"""What another --clip-model costs on this machine: model build and image forward time of open_clip
architectures, with random weights (nothing is downloaded).

Per architecture:
- build, random init: open_clip.create_model_and_transforms(pretrained=None), which draws every
  initial weight;
- build, for a file: models.build_unloaded_clip, what the tool builds before a weights file
  fills it (no random draws; loading the file comes on top);
- forward: the image tower (encode_image, unit features, channels_last as in a run) on one
  batch of --batch-size random images at the model's own size, fp32, after one warm-up batch;
  the best of --repeats, divided by the batch size; with each of --threads torch threads (a
  run uses all the CPUs it may; one thread is steadier on a machine shared with other jobs).
The text tower's cost (the prompts of the text classifier) is cached by the tool and not timed.

    python benchmarks/bench_backbones.py                        # RN50, ViT-B-32, ViT-B-16
    python benchmarks/bench_backbones.py --architectures RN50 --batch-size 2 --repeats 1
"""
import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from inference import models  # noqa: E402
from bench_inference import cpu_model  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--architectures", nargs="+", default=["RN50", "ViT-B-32", "ViT-B-16"],
                        help="open_clip model names (open_clip.list_models())")
    parser.add_argument("--batch-size", type=int, default=8, help="images per timed forward")
    parser.add_argument("--repeats", type=int, default=5, help="timed forwards (and builds) per architecture")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, os.cpu_count()],
                        help="torch thread counts to time the forward with")
    return parser.parse_args(argv)


def seconds(action):
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def measure(architecture, args):
    """(build random init s, build for a file s, {threads: forward s per image}, parameters in
    millions, input size)."""
    import logging
    import open_clip
    import torch
    logging.disable(logging.WARNING)  # open_clip: "initialized randomly"
    random_builds = [seconds(lambda: open_clip.create_model_and_transforms(architecture, pretrained=None))[0]
                     for _ in range(args.repeats)]
    unloaded_builds = []
    for _ in range(args.repeats):
        build_seconds, (model, _) = seconds(
            lambda: models.build_unloaded_clip(architecture, quick_gelu=False))
        unloaded_builds.append(build_seconds)
    model = model.eval().to(memory_format=torch.channels_last)
    size = model.visual.image_size
    size = size if isinstance(size, tuple) else (size, size)
    images = torch.randn(args.batch_size, 3, *size).to(memory_format=torch.channels_last)
    per_image = {}
    with torch.inference_mode():
        for threads in args.threads:
            torch.set_num_threads(threads)
            model.encode_image(images, normalize=True)  # warm-up: oneDNN picks its kernels
            per_image[threads] = min(seconds(lambda: model.encode_image(images, normalize=True))[0]
                                     for _ in range(args.repeats)) / args.batch_size
    parameters = sum(parameter.numel() for parameter in model.parameters()) / 1e6
    return min(random_builds), min(unloaded_builds), per_image, parameters, size


def main(argv=None):
    args = parse_args(argv)
    import open_clip
    import torch
    for architecture in args.architectures:
        if architecture not in open_clip.list_models():
            sys.exit(f"error: {architecture} is not an open_clip model name.")
    print(f"machine: {cpu_model()}, {os.cpu_count()} CPUs, torch {torch.__version__}; "
          f"load average before: {os.getloadavg()[0]:.2f}")
    print(f"fp32, batch of {args.batch_size} random images, best of {args.repeats}; forward in ms "
          "per image (images/s) by torch threads\n")
    forward_headers = "".join(f"{f'forward, {threads} thread' + 's' * (threads > 1):>24}"
                              for threads in args.threads)
    print(f"{'architecture':<14}{'params':>9}{'input':>10}{'build (random init)':>22}"
          f"{'build (for a file)':>21}{forward_headers}")
    for architecture in args.architectures:
        random_build, unloaded_build, per_image, parameters, size = measure(architecture, args)
        forwards = "".join(f"{f'{forward * 1000:.0f} ms ({1 / forward:.1f}/s)':>24}"
                           for forward in per_image.values())
        print(f"{architecture:<14}{parameters:>8.1f}M{f'{size[0]}x{size[1]}':>10}{random_build:>21.2f}s"
              f"{unloaded_build:>20.2f}s{forwards}")
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
