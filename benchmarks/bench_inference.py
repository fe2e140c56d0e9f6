#!/usr/bin/env python3
"""Where a run's time goes: JPEG decoding, the forward pass, the pipeline that joins them, and
the whole `starter.py --model ...` command phase by phase.

Writes an ImageNet100-style folder of photo-like JPEGs (ImageNet's size mix, a smooth colour
field plus pixel noise at quality 90: about ImageNet's 110-120 KB per file) and random weights
in the real formats, then per model:
- decode limit: the DataLoader alone (same workers, batch size and transform, no model);
- bare forward: the model on one ready batch, at each precision the device has;
- pipeline: inference.compute_chunks with the run's precision (--precision, default fp32), the
  model already built, each chunk's part written as in a run;
- ratio: pipeline / min(decode limit, bare forward at that precision), the share of the
  achievable rate the pipeline reaches (target ≥ 0.9);
- agreement: at each precision, the logits of a few images against a CPU fp32 forward (max
  difference relative to the largest logit, and top-1 predictions changed);
and then times each whole command in a fresh interpreter with a phase breakdown (imports, model
build, first batch, loop, analysis, figures). Each rate is the best of --rounds.

    python benchmarks/bench_inference.py                                  # 5,000 images
    python benchmarks/bench_inference.py --images 500 --models debiaspl   # quicker, on a CPU
"""
import argparse
import contextlib
import copy
import importlib
import io
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))
os.environ.setdefault("TQDM_DISABLE", "1")  # no progress bars between the numbers

import numpy as np  # noqa: E402

from sources import samples  # noqa: E402
from inference import distributed  # noqa: E402
from inference import models  # noqa: E402
import starter  # noqa: E402
from cli import settings  # noqa: E402
from demo import synthetic  # noqa: E402
from timing import COMMAND_DEADLINE_SECONDS, StageTimer  # noqa: E402

# ImageNet validation images come in these sizes (most are 500 x 375 or 375 x 500).
IMAGE_SIZES = ((500, 375), (375, 500), (500, 333), (500, 500), (640, 480), (800, 600))
PIXEL_NOISE = 15  # grey levels: gives ~115 KB JPEGs at quality 90, as ImageNet's val set
TARGET_RATIO = 0.9
COMPARED_IMAGES = 32  # compared with a CPU fp32 forward: a few seconds on a CPU


def parse_args(argv=None):
    defaults = starter.build_parser().parse_args([])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--images", type=int, default=5000,
                        help="generated images, spread evenly over the classes (rounded up)")
    parser.add_argument("--classes", type=int, default=100,
                        help="class folders: the first N of ImageNet100's classes")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size,
                        help="images per forward pass; the default is starter.py's")
    parser.add_argument("--workers", type=int, default=distributed.current_place().cpus,
                        help="DataLoader worker processes; the default is starter.py's (this "
                             "process's share of the usable CPUs)")
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto",
                        help="auto = cuda when available, as in starter.py")
    parser.add_argument("--precision", choices=models.PRECISIONS, default=defaults.precision,
                        help="precision of the pipeline and the commands; the bare forward is "
                             "timed at every precision the device has")
    parser.add_argument("--models", nargs="+", choices=("clip", "debiaspl"),
                        default=["clip", "debiaspl"], help="models to time")
    parser.add_argument("--prompts", choices=("ensemble", "single"), default="single",
                        help="clip's prompts in the timed command (ensemble builds 80 prompts a "
                             "class on first use: minutes on a CPU)")
    parser.add_argument("--rounds", type=int, default=3, help="measurements of each rate")
    parser.add_argument("--no-commands", action="store_true",
                        help="skip the timing of whole starter.py commands")
    args = parser.parse_args(argv)
    if min(args.images, args.classes, args.batch_size, args.rounds) < 1 or args.workers < 0:
        parser.error("--images, --classes, --batch-size and --rounds must be at least 1, "
                     "--workers at least 0")
    if args.classes > 100:
        parser.error("--classes is at most 100 (ImageNet100)")
    return args


def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


# ---------------------------------------------------------------------------------------------
# Inputs

def write_photo_like_class(job):
    """Write one class folder of photo-like JPEGs; returns their total bytes."""
    folder, class_index, count, seed = job
    from PIL import Image
    rng = np.random.default_rng([seed, class_index])
    folder.mkdir(parents=True, exist_ok=True)
    total = 0
    for image_index in range(count):
        width, height = IMAGE_SIZES[(class_index + image_index) % len(IMAGE_SIZES)]
        coarse = rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
        field = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC), np.float32)
        pixels = field + rng.normal(0, PIXEL_NOISE, field.shape).astype(np.float32)
        path = folder / f"ILSVRC2012_val_{class_index:04d}{image_index:04d}.JPEG"
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, format="JPEG", quality=90)
        total += path.stat().st_size
    return total


def write_inputs(folder, args):
    """(data root, clip weights, DebiasPL checkpoint or None when debiaspl is not benchmarked,
    mean JPEG bytes). The JPEGs are written in threads (numpy and Pillow's encoder let go of the
    GIL), while the weights are made: not in forked processes, which in a process with threads
    (torch's, a test's) can inherit a lock another thread held, and wait for it forever."""
    wnids = synthetic.imagenet100_wnids()[:args.classes]
    per_class = math.ceil(args.images / len(wnids))
    jobs = [(folder / "data" / "val" / wnid, index, per_class, 0) for index, wnid in enumerate(wnids)]
    with ThreadPoolExecutor(distributed.usable_cpus()) as pool:
        jpeg_bytes = pool.map(write_photo_like_class, jobs)
        # clip's weights always: a debiaspl command needs clip's class order from a clip run.
        clip_weights = synthetic.write_clip_weights(folder / "clip.pt")
        checkpoint = (synthetic.write_debiaspl_checkpoint(folder / "debiaspl.pth.tar")
                      if "debiaspl" in args.models else None)
        total_bytes = sum(jpeg_bytes)
    return folder / "data", clip_weights, checkpoint, total_bytes / (per_class * len(wnids))


def run_arguments(model_name, files, args, out):
    data, clip_weights, checkpoint, _ = files
    return ["--model", model_name, "--data", str(data), "--out", str(out), "--device", args.device,
            "--precision", args.precision, "--batch-size", str(args.batch_size),
            "--workers", str(args.workers), "--clip-weights", str(clip_weights),
            "--prompts", args.prompts, *(["--checkpoint", str(checkpoint)] if checkpoint else [])]


# ---------------------------------------------------------------------------------------------
# Rates

def best_rate(measure, count, rounds):
    """(best images/s, all images/s) of `rounds` calls of measure(), each over `count` images."""
    rates = []
    for _ in range(rounds):
        start = time.perf_counter()
        measure()
        rates.append(count / (time.perf_counter() - start))
    return max(rates), rates


def decode_only(dataset, args):
    """Iterate the DataLoader the pipeline would use, with no model behind it."""
    import torch
    from inference import engine
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, shuffle=False,
                                         num_workers=args.workers, collate_fn=engine.collate_indexed)
    for _ in loader:
        pass


def bare_forward(model, images, device, precision, repeats):
    import torch
    from inference import models
    with torch.inference_mode(), models.autocast(device, precision):
        for _ in range(repeats):
            model(images)
        if device.type == "cuda":
            torch.cuda.synchronize(device)


def logits_of(model, images):
    """A model's logits; CLIP keeping its features returns (logits, features)."""
    outputs = model(images)
    return (outputs[0] if isinstance(outputs, tuple) else outputs).float()


def logits_versus_cpu(model, images, reference_logits, device, precision):
    """(max |logits - reference| / max |reference|, top-1 predictions changed) of `images` at
    `precision`, the reference being a CPU fp32 run's logits of the same images."""
    import torch
    from inference import models
    with torch.inference_mode(), models.autocast(device, precision):
        logits = logits_of(model, images).cpu()
    scale = reference_logits.abs().max()
    changed = int((logits.argmax(1) != reference_logits.argmax(1)).sum())
    return float((logits - reference_logits).abs().max() / scale), changed


def device_precisions(device):
    from inference import models
    return models.PRECISIONS if device.type == "cuda" else ("fp32",)


def benchmark_rates(model_name, files, args, scratch):
    """Print the decode limit, bare forward per precision, pipeline, and their ratio."""
    import torch
    from inference import engine
    captured = {}

    class Captured(Exception):
        pass

    def capture(*arguments):  # predict's call of compute_chunks: keep its model, dataset, store
        captured["arguments"] = arguments
        raise Captured

    original, engine.compute_chunks = engine.compute_chunks, capture
    run_args = starter.build_parser().parse_args(run_arguments(model_name, files, args, scratch / "out"))
    split, source = samples.open_source(run_args.data, index_dir=scratch / "out" / "cache")
    clip = model_name == "clip"
    described = samples.describe_source(source, run_args.class_names,
                                        prompts=run_args.prompts if clip else None)
    try:
        engine.predict(settings.inference_config(run_args, split, described),
                       settings.execution_settings(run_args), described, source,
                       scratch / "out" / model_name)
    except Captured:
        pass
    finally:
        engine.compute_chunks = original
    model, dataset, device = captured["arguments"][:3]
    store, chunks = captured["arguments"][7:9]
    count = len(dataset)
    model = model.to(device, memory_format=torch.channels_last).eval()
    batch = min(args.batch_size, count)
    images = torch.stack([dataset[i][0] for i in range(batch)]).to(device, memory_format=torch.channels_last)
    repeats = math.ceil(count / batch)
    print(f"\n{model_name}: {count} images, batch {batch}, {args.workers} workers; images/s, best "
          f"of {args.rounds} [all]")
    rows = [("decode limit (DataLoader, no model)",
             *best_rate(lambda: decode_only(dataset, args), count, args.rounds))]
    # What each precision changes: a few images against a CPU fp32 run (on a CPU, itself).
    compared = images[:COMPARED_IMAGES]
    with torch.inference_mode():
        reference_logits = logits_of(copy.deepcopy(model).cpu(), compared.cpu())
    bare, agreement = {}, {}
    for precision in device_precisions(device):
        models.set_precision(device, precision)
        bare_forward(model, images, device, precision, 1)  # cuDNN / oneDNN pick kernels
        bare[precision] = best_rate(lambda: bare_forward(model, images, device, precision, repeats),
                                    repeats * batch, args.rounds)
        rows.append((f"bare forward, {precision}", *bare[precision]))
        agreement[precision] = logits_versus_cpu(model, compared, reference_logits, device, precision)
    models.set_precision(device, args.precision)
    pipeline = best_rate(lambda: engine.compute_chunks(
        model, dataset, device, args.precision, args.batch_size, args.workers, False, store, chunks),
        count, args.rounds)
    rows.append((f"pipeline, {args.precision}", *pipeline))
    for label, best, rates in rows:
        print(f"  {label:<38} {best:9.1f}  [{', '.join(f'{rate:.1f}' for rate in rates)}]")
    limit = min(rows[0][1], bare[args.precision][0])
    ratio = pipeline[0] / limit
    print(f"  pipeline / min(decode limit, bare forward) = {ratio:.2f} "
          f"({'meets' if ratio >= TARGET_RATIO else 'BELOW'} the {TARGET_RATIO} target)")
    print(f"  logits of {len(compared)} images vs a CPU fp32 run: max |difference| / max |logit|, "
          "top-1 predictions changed" + (" (on a CPU: the same computation)" if device.type == "cpu" else ""))
    for precision, (difference, changed) in agreement.items():
        print(f"    {device.type} {precision:<5} {difference:9.1e}  {changed}/{len(compared)}")


# ---------------------------------------------------------------------------------------------
# Whole commands

def timed_command(argv):
    """[(phase, seconds)] and total seconds of `starter.main(argv)`; run in a fresh interpreter
    (`--command-phases`), so that the imports are timed as a real command meets them."""
    phases = []
    for modules in (("torch", "torchvision"), ("open_clip",) if argv[1] == "clip" else ()):
        start = time.perf_counter()
        for module in modules:
            importlib.import_module(module)
        if modules:
            phases.append((f"import {' + '.join(modules)}", time.perf_counter() - start))
    from analysis import run_analysis
    from inference import engine
    from inference import models
    timer = StageTimer()
    loop = {}

    def first_batch_clock(device, precision):  # the loop enters autocast once per batch
        if "start" in loop:
            loop.setdefault("first", time.perf_counter())
        return autocast(device, precision)

    autocast = models.autocast
    models.autocast = first_batch_clock
    text_classifier = {}
    build_text_classifier = models.clip_text_classifier

    def timed_text_classifier(*arguments):  # inside the model build: timed apart
        start = time.perf_counter()
        try:
            return build_text_classifier(*arguments)
        finally:
            text_classifier["seconds"] = time.perf_counter() - start

    models.clip_text_classifier = timed_text_classifier
    for owner, name, label in [
            (models, "build_clip_zero_shot", "model build (weights)"),
            (models, "build_debiaspl", "model build (weights)"),
            (engine, "compute_chunks", "image loop"),
            (run_analysis, "summarize", "analysis: metrics"),
            (run_analysis, "centroid_neighbours", "analysis: centroids"),
            (run_analysis, "draw_figures", "figures: draw"),
            (run_analysis, "draw_pseudo_labels", "figures: draw"),
            (run_analysis, "write_figures", "figures: render + save PNGs (in parallel from 50 classes)"),
            (run_analysis, "write_json", "analysis: write JSON")]:
        timer.wrap(owner, name, label)
    original_compute_chunks = engine.compute_chunks

    def compute_chunks(*arguments):  # called more than once (its chunks, then none left): the first counts
        loop.setdefault("start", time.perf_counter())
        return original_compute_chunks(*arguments)

    engine.compute_chunks = compute_chunks
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        status = starter.main(argv)
    total = time.perf_counter() - start
    if status != 0:
        raise RuntimeError(f"starter.main exited with {status}")
    stages = {}
    for label, seconds in timer.stages:  # e.g. "figures: draw" of each figure: add them up
        stages[label] = stages.get(label, 0.0) + seconds
    loop_seconds = stages.pop("image loop")
    first = loop["first"] - loop["start"]
    build = {"model build (weights)": stages.pop("model build (weights)")}
    if "seconds" in text_classifier:
        build["model build (weights)"] -= text_classifier["seconds"]
        build["clip's text classifier (first run; then cached)"] = text_classifier["seconds"]
    stages = build | {"image loop: first batch ready": first,
                      "image loop: the rest": loop_seconds - first} | stages
    stages["other (scan, hashing, parsing, merging the parts)"] = total - sum(stages.values())
    return phases + list(stages.items()), total


def benchmark_commands(files, args, scratch):
    print("\nwhole commands, each in a fresh interpreter (seconds):")
    out = scratch / "commands"
    if "clip" not in args.models:  # debiaspl keeps clip's class order: run clip, untimed
        with contextlib.redirect_stdout(io.StringIO()):
            starter.main(run_arguments("clip", files, args, out))
    for model_name in sorted(args.models):  # clip first
        start = time.perf_counter()
        result = subprocess.run([sys.executable, __file__, "--command-phases",
                                 json.dumps(run_arguments(model_name, files, args, out))],
                                check=True, capture_output=True, text=True, timeout=COMMAND_DEADLINE_SECONDS)
        whole = time.perf_counter() - start
        phases, main_seconds = json.loads(result.stdout.splitlines()[-1])
        print(f"  {model_name}: {whole:.2f} s in all (interpreter start and imports included); "
              f"starter.main {main_seconds:.2f} s")
        for label, seconds in phases:
            print(f"    {label:<50} {seconds:7.2f}")


def main(argv=None):
    args = parse_args(argv)
    import torch
    from inference import models
    device = models.resolve_device(args.device)
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores ({distributed.usable_cpus()} usable); torch "
          f"{torch.__version__}; device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""))
    with tempfile.TemporaryDirectory(prefix="bench-inference-") as scratch:
        scratch = Path(scratch)
        start = time.perf_counter()
        files = write_inputs(scratch, args)
        print(f"inputs: {args.images} JPEGs over {args.classes} classes, mean {files[3] / 1e3:.0f} KB, "
              f"written in {time.perf_counter() - start:.1f} s")
        for model_name in args.models:
            benchmark_rates(model_name, files, args, scratch)
        if not args.no_commands:
            benchmark_commands(files, args, scratch)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--command-phases"]:  # benchmark_commands' child: one timed command
        print(json.dumps(timed_command(json.loads(sys.argv[2]))))
    else:
        main()
