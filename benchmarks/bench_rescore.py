"""What --rescore costs: a CLIP RN50 cache of N images x K classes (random unit features, random
weights saved as a state dict) re-predicted with new templates through inference/rescore.py,
timed as a whole and in its two parts: CLIP's text encoder for the K x T new prompts, and the
rest (reading the cache, logit_scale x features @ text.T, writing the new cache).

    python benchmarks/bench_rescore.py                               # 50,000 x 1,000, 1 template
    python benchmarks/bench_rescore.py --images 20 --classes 3       # smoke test
"""
import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from timing import StageTimer  # noqa: E402
from runs import cache  # noqa: E402


def write_source_run(out, images, classes, dimension=1024, seed=0):
    """OUT/clip/predictions.npz: random unit image and text features, the weights file its meta
    names (random RN50, as open_clip builds it)."""
    import open_clip
    import torch
    from inference import models
    rng = np.random.default_rng(seed)
    weights = out / "rn50-random.pt"
    torch.save(open_clip.create_model("RN50-quickgelu").state_dict(), weights)
    image_features = rng.normal(size=(images, dimension)).astype(np.float32)
    image_features /= np.linalg.norm(image_features, axis=1, keepdims=True)
    text_features = rng.normal(size=(classes, dimension)).astype(np.float32)
    text_features /= np.linalg.norm(text_features, axis=1, keepdims=True)
    wnids = np.array([f"class{k:04d}" for k in range(classes)])
    cache.save_predictions(out / "clip" / "predictions.npz", cache.Predictions(
        logits=100 * image_features @ text_features.T, labels=rng.integers(0, classes, images),
        paths=np.array([f"{i}.jpg" for i in range(images)]), wnids=wnids,
        names=np.array([f"thing number {k}" for k in range(classes)]),
        meta={"model": "clip", "architecture": "RN50", "weights": str(weights),
              "weights_identity": models.clip_weights_identity("RN50", weights), "logit_scale": 100.0,
              "templates": ["a photo of a {c}."]},
        image_features=image_features, text_features=text_features))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50_000, help="cached image features")
    parser.add_argument("--classes", type=int, default=1000, help="classes to embed anew")
    parser.add_argument("--templates", type=int, default=1, help="prompt templates per class")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from inference import models, rescore
    timer = StageTimer()
    timer.wrap(models, "clip_text_classifier", "CLIP's text encoder (new prompts)")
    with tempfile.TemporaryDirectory(prefix="bench-rescore-") as scratch:
        out = Path(scratch)
        write_source_run(out, args.images, args.classes)
        templates = out / "templates.txt"
        templates.write_text("".join(f"a photo of a {{c}}, variant {t}.\n" for t in range(args.templates)))
        start = time.perf_counter()
        rescore.rescore("clip", out, out / "clip-rescored", templates_file=templates, device="cpu")
        total = time.perf_counter() - start
    encoder = sum(seconds for _, seconds in timer.stages)
    print(f"=== --rescore of {args.images:,} images x {args.classes:,} classes, {args.templates} "
          f"template(s), CPU ===")
    print(f"whole rescore: {total:.1f} s; CLIP's text encoder: {encoder:.1f} s "
          f"({100 * encoder / total:.0f}%); the rest (weights load, cache read, logits, write): "
          f"{total - encoder:.1f} s")


if __name__ == "__main__":
    main()
