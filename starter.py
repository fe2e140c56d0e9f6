#!/usr/bin/env python3
"""How imbalanced are CLIP's pseudo-labels, and what does debiasing do to them?

Runs OpenAI's CLIP RN50 zero-shot (`--model clip`) or the DebiasPL zero-shot checkpoint
(`--model debiaspl`) over an ImageNet(100) validation folder and writes, under OUT/<model>/,
the cached logits, per-class metrics, the ordered histograms (Q1a/Q2a), the confusion matrix
(Q1b/Q2b) and the centroid neighbours (Q1c/Q2c) of homework 3. `--model clip-la` runs no model:
it debiases clip's cached logits by training-free logit adjustment with DebiasPL's
moving-average pseudo-label prior (homework §2.2) and analyses them the same way.

    python starter.py --model clip
    python starter.py --model debiaspl
    python starter.py --model clip-la   # after clip
    python starter.py --demo            # random weights, generated images: checks the plumbing
    python starter.py --report          # OUT/report.pdf and report.md from the runs in OUT

torch, torchvision and open_clip are imported only when inference runs, so `--from-cache`
redoes every figure and number from predictions.npz in seconds.
"""
import argparse
import csv
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import logit_adjustment
import metrics
import plotting

PROJECT_DIR = Path(__file__).resolve().parent
IMAGENET100_TABLE = PROJECT_DIR / "imagenet100.tsv"
COURSE_DATA_DIR = "/scratch/eecs542f25_class_root/eecs542f25_class/shared_data/imagenet-100"
SINGLE_PROMPT = "a photo of a {}."
CLIP_ARCHITECTURE = "RN50-quickgelu"  # OpenAI trained RN50 with QuickGELU
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NEIGHBOR_COUNT = 10
REFERENCE_MODEL = "clip"  # Q2: "keep the same order of classes as in Q1"
MODEL_TITLES = {
    "clip": "CLIP RN50 zero-shot",
    "debiaspl": "DebiasPL (zero-shot, RN50)",
    "clip-la": "CLIP RN50 + logit adjustment",
}
LOGIT_ADJUSTED_MODEL = "clip-la"  # clip's cached logits, debiased without training
LAMBDA_SWEEP = np.linspace(0.0, 2.0, 21)  # λ values of la_sweep.png
FIGURE_DPI = 200
# What torchvision's ImageFolder loads (its IMG_EXTENSIONS), kept here so caches are checked
# without importing torch.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


class UserError(Exception):
    """A mistake the user can fix (path, file, option): reported as one sentence, no traceback."""


def build_parser():
    parser = argparse.ArgumentParser(
        description="Pseudo-label imbalance of CLIP RN50 and DebiasPL on ImageNet100 (homework 3).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model", choices=sorted(MODEL_TITLES),
                        help="which model to evaluate: clip (Q1), debiaspl (Q2; run clip first) or "
                             "clip-la (clip's cached logits, logit-adjusted; run clip first)")
    parser.add_argument("--demo", action="store_true",
                        help="generate a small ImageNet100-style folder and random weights in the "
                             "real file formats, run clip, debiaspl and clip-la on them into OUT/demo/")
    parser.add_argument("--data", default=os.environ.get("IMAGENET100_ROOT", COURSE_DATA_DIR),
                        help="ImageNet100 root holding val/, or the val folder itself; the default "
                             "is $IMAGENET100_ROOT when set, else the course's copy")
    parser.add_argument("--out", default=str(PROJECT_DIR / "figures"),
                        help="output folder; each model writes to OUT/<model>/")
    parser.add_argument("--from-cache", action="store_true",
                        help="skip inference: redo metrics and figures from OUT/<model>/predictions.npz")
    parser.add_argument("--report", action="store_true",
                        help="write OUT/report.pdf, OUT/report.md and OUT/comparison.png from the "
                             "runs already in OUT (after --model's run when both are given; "
                             "--demo always writes its own)")
    clip = parser.add_argument_group("CLIP (--model clip)")
    clip.add_argument("--clip-weights", default="openai",
                      help="'openai' (open_clip downloads OpenAI's RN50 weights) or a local file: "
                           "OpenAI's RN50.pt or a saved open_clip RN50 state dict")
    clip.add_argument("--prompts", choices=("ensemble", "single"), default="ensemble",
                      help="ensemble: OpenAI's 80 ImageNet templates (CLIP's published protocol); "
                           f"single: exactly {SINGLE_PROMPT!r}")
    debiaspl = parser.add_argument_group("DebiasPL (--model debiaspl)")
    debiaspl.add_argument("--checkpoint", default="./debiaspl_zsl_epoch50.pth.tar",
                          help="the DebiasPL FixMatch checkpoint (.pth.tar)")
    debiaspl.add_argument("--branch", choices=("main", "ema"), default="main",
                          help="which network of the checkpoint: main (what the DebiasPL repository "
                               "evaluates) or ema (its EMA teacher)")
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help="load weight files that hold Python objects other than tensors and "
                             "numpy scalars; unpickling such a file can run code from it, so only "
                             "for files from a source you trust")
    inference = parser.add_argument_group("inference")
    inference.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto",
                           help="auto = cuda when available; fp16 autocast is used on cuda")
    inference.add_argument("--batch-size", type=int, default=64,
                           help="images per forward pass; for clip-la, images per moving-average "
                                "update of the prior p̂")
    inference.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1),
                           help="data-loading processes (0 = load in the main process)")
    inference.add_argument("--skip-bad-images", action="store_true",
                           help="evaluate the images that can be read and list the unreadable ones "
                                "in metrics.json under 'skipped'; without it, unreadable images stop "
                                "the run and are named")
    adjustment = parser.add_argument_group(
        "logit adjustment (--model clip-la)",
        "clip's cached logits s become s − λ·log p̂, where p̂ starts uniform and, over batches of "
        "--batch-size images in a seeded random order, p̂ ← m·p̂ + (1 − m)·(mean softmax "
        "probability, before debiasing, of the batch's images whose top probability is ≥ τ).")
    adjustment.add_argument("--la-momentum", type=unit_interval, default=0.99, metavar="m",
                            help="moving-average momentum m of p̂ (DebiasPL's zero-shot script "
                                 "uses qhat_m 0.99)")
    adjustment.add_argument("--la-threshold", type=unit_interval, default=0.95, metavar="τ",
                            help="confidence threshold τ: only images whose top softmax probability "
                                 "is ≥ τ enter a batch's mean; a batch with none leaves p̂ unchanged")
    adjustment.add_argument("--la-lambda", type=finite_float, default=1.0, metavar="λ",
                            help="adjustment strength λ in s − λ·log p̂ (0 leaves clip unchanged; "
                                 "la_sweep.png shows λ from 0 to 2)")
    adjustment.add_argument("--la-mode", choices=("final", "online"), default="final",
                            help="final: every image debiased with p̂ after the last batch; online: "
                                 "each batch debiased with p̂ as it is before that batch's update, as "
                                 "DebiasPL debiases its pseudo-labels (so the first batch keeps "
                                 "clip's predictions)")
    adjustment.add_argument("--la-seed", type=int, default=0,
                            help="seed of the random image order the batches are drawn in (the cache "
                                 "is sorted by class: unshuffled batches would hold one class each)")
    adjustment.add_argument("--la-passes", type=int, default=1,
                            help="passes over the images while estimating p̂, each in a new "
                                 "random order; online mode debiases with the last pass's p̂. "
                                 "One pass of 79 batches (ImageNet100, batch 64) leaves "
                                 "0.99^79 ≈ 45%% of the uniform start in p̂; DebiasPL's estimate "
                                 "runs through 50 epochs")
    return parser


def unit_interval(text):
    """argparse type: a number from 0 to 1."""
    value = finite_float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1")
    return value


def finite_float(text):
    """argparse type: a finite number (not nan or inf)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not np.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text} is not a finite number")
    return value


# ---------------------------------------------------------------------------------------------
# Files: every output is written to a temporary file and renamed, so none is ever half-written.

def write_atomic(path, write):
    """Call write(binary_file) on a temporary file next to `path`, then rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp",
                                         delete=False)
    try:
        with handle:
            write(handle)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(handle.name, 0o666 & ~umask)  # NamedTemporaryFile creates 0600
        os.replace(handle.name, path)
    except BaseException:
        os.unlink(handle.name)
        raise


def write_json(path, data):
    write_atomic(path, lambda f: f.write((json.dumps(data, indent=2) + "\n").encode()))


def write_figure(path, figure):
    # zlib level 3 instead of PIL's 6: ~0.1 s less per multi-megapixel figure, ~20% larger files.
    write_atomic(path, lambda f: figure.savefig(f, format="png", dpi=FIGURE_DPI,
                                                pil_kwargs={"compress_level": 3}))


def read_json(path, what):
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"{what} {path} does not exist.") from None
    except (OSError, ValueError) as error:
        raise UserError(f"{what} {path} cannot be read ({error}).") from None


# ---------------------------------------------------------------------------------------------
# Predictions: the cache every analysis starts from.

@dataclass
class Predictions:
    logits: np.ndarray  # float32 [N, K], columns = the dataset's classes
    labels: np.ndarray  # int64 [N], ground truth
    paths: np.ndarray  # str [N], relative to the val folder
    wnids: np.ndarray  # str [K], ImageFolder order (sorted)
    names: np.ndarray  # str [K], CLIP's curated ImageNet class names
    meta: dict  # what produced these logits


PREDICTION_KEYS = ("logits", "labels", "paths", "wnids", "names", "meta")


def save_predictions(path, predictions):
    arrays = {key: getattr(predictions, key) for key in PREDICTION_KEYS[:-1]}
    arrays["meta"] = np.array(json.dumps(predictions.meta))
    write_atomic(path, lambda f: np.savez(f, **arrays))


def load_predictions(path):
    """The cache of a run; a missing or damaged one stops with the command that rebuilds it."""
    path = Path(path)
    rebuild = f"run `python starter.py --model {path.parent.name}` without --from-cache to rebuild it"
    if not path.is_file():
        raise UserError(f"there is no cache at {path}; {rebuild}.")
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [key for key in PREDICTION_KEYS if key not in archive.files]
            if missing:
                raise UserError(f"the cache {path} lacks {', '.join(missing)}; {rebuild}.")
            loaded = {key: archive[key] for key in PREDICTION_KEYS}
        loaded["meta"] = json.loads(str(loaded["meta"]))
        if not isinstance(loaded["meta"], dict) or "model" not in loaded["meta"]:
            raise ValueError("its meta entry names no model")
    except UserError:
        raise
    except Exception as error:
        raise UserError(f"the cache {path} is damaged ({error}); {rebuild}.") from None
    return Predictions(**loaded)


# ---------------------------------------------------------------------------------------------
# Classes: ImageNet wnids, their ImageNet-1k index and CLIP's curated names.

def resolve_val_dir(data):
    """The folder of wnid folders: DATA/val when it exists, else DATA itself."""
    root = Path(data).expanduser()
    if not root.is_dir():
        raise UserError(f"the data folder {root} does not exist; pass --data or set "
                        "IMAGENET100_ROOT.")
    return root / "val" if (root / "val").is_dir() else root


def imagenet1k_wnids():
    """The 1,000 ImageNet-1k wnids in class-index order (timm ships the list)."""
    from timm.data import ImageNetInfo
    return ImageNetInfo("imagenet-1k").label_names()


def read_imagenet100_table():
    with IMAGENET100_TABLE.open(newline="") as table:
        return list(csv.DictReader(table, delimiter="\t"))


def describe_classes(wnids):
    """(ImageNet-1k indices, CLIP class names) of the folder's wnids."""
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES
    index_of = {wnid: index for index, wnid in enumerate(imagenet1k_wnids())}
    unknown = [wnid for wnid in wnids if wnid not in index_of]
    if unknown:
        raise UserError(f"class folder {unknown[0]!r} is not an ImageNet-1k wnid"
                        + (f" (nor are {len(unknown) - 1} others)" if len(unknown) > 1 else "")
                        + "; the data folder must hold one folder per ImageNet class.")
    indices = [index_of[wnid] for wnid in wnids]
    return indices, [IMAGENET_CLASSNAMES[index] for index in indices]


def warn_if_not_imagenet100(wnids):
    standard = {row["wnid"] for row in read_imagenet100_table()}
    missing, extra = sorted(standard - set(wnids)), sorted(set(wnids) - standard)
    if missing or extra:
        print(f"warning: the folder's {len(wnids)} classes are not the standard ImageNet100: "
              f"{len(missing)} of its classes are missing and {len(extra)} others are present; "
              "results are for the folder's classes.", file=sys.stderr)


def find_class_folders(val_dir):
    wnids = sorted(entry.name for entry in os.scandir(val_dir) if entry.is_dir())
    if not wnids:
        raise UserError(f"{val_dir} holds no class folders; --data must point to ImageNet100's "
                        "root or its val folder.")
    return wnids


# ---------------------------------------------------------------------------------------------
# Models. Each loader returns (torch module mapping images to [B, K] logits, eval transform).

def resolve_device(name):
    import torch
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but this machine has no usable CUDA GPU; "
                        "use --device cpu.")
    return torch.device(name)


def checkpoint_safe_globals():
    """Non-tensor types that real training checkpoints carry and that run no code: numpy scalars
    (e.g. a best_acc1 saved as np.float64, under numpy 2's and numpy 1's module names) and dtypes."""
    scalar = np.dtype("f8").type(0).__reduce__()[0]  # numpy._core.multiarray.scalar
    dtype_classes = [type(np.dtype(code)) for code in "?bBhHiIlLqQefdgFDG"]
    return [scalar, (scalar, "numpy.core.multiarray.scalar"), np.dtype, *dtype_classes]


def read_checkpoint(path, what, trust=False):
    """torch.load that runs no code from the file unless the user trusts it (--trust-checkpoint)."""
    import pickle
    import re
    import torch
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"the {what} {path} does not exist.")
    try:
        with torch.serialization.safe_globals(checkpoint_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=not trust)
    except pickle.UnpicklingError as error:
        refused = re.search(r"GLOBAL ([\w.]+)", str(error))
        if refused:
            raise UserError(f"the {what} {path} holds a Python object ({refused.group(1)}) that "
                            "loading would have to run code to rebuild, so it was not loaded; pass "
                            "--trust-checkpoint only if you trust where the file came from.") from None
        raise UserError(f"{path} is not a readable PyTorch {what} ({error}).") from None
    except Exception as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UserError(f"{path} is not a readable PyTorch {what} ({reason}).") from None


def read_clip_state_dict(path, trust=False):
    """An open_clip-layout state dict from OpenAI's TorchScript RN50.pt or a torch.save'd file."""
    import torch
    import warnings
    import zipfile
    path = Path(path).expanduser()
    if path.is_file() and zipfile.is_zipfile(path) and any(
            "/code/__torch__" in name for name in zipfile.ZipFile(path).namelist()):
        # OpenAI's RN50.pt is a TorchScript archive: torch.jit.load reads it without unpickling
        # Python objects. Its state dict has open_clip's key layout plus three int buffers;
        # open_clip's own jit=True export adds the text attention mask, which open_clip rebuilds.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # jit is deprecated, yet OpenAI ships it
            state_dict = torch.jit.load(str(path), map_location="cpu").state_dict()
        for key in ("input_resolution", "context_length", "vocab_size", "attn_mask"):
            state_dict.pop(key, None)
        return state_dict
    checkpoint = read_checkpoint(path, "CLIP weights file", trust)
    state_dict = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state_dict, dict):
        raise UserError(f"{path} holds no state dict.")
    return {key.removeprefix("module."): value for key, value in state_dict.items()}


def check_state_dict(model, state_dict, source):
    """Stop with the differing keys or shapes when `state_dict` does not fit `model` exactly."""
    expected = model.state_dict()
    missing = [key for key in expected if key not in state_dict]
    unexpected = [key for key in state_dict if key not in expected]
    reshaped = [f"{key} {tuple(state_dict[key].shape)} vs {tuple(value.shape)}"
                for key, value in expected.items()
                if key in state_dict and tuple(state_dict[key].shape) != tuple(value.shape)]
    problems = [f"{label} {', '.join(items[:3])}" + (f" and {len(items) - 3} more" if len(items) > 3 else "")
                for label, items in (("missing keys:", missing), ("unexpected keys:", unexpected),
                                     ("shapes differ:", reshaped)) if items]
    if problems:
        raise UserError(f"{source} does not fit {type(model).__name__} ({'; '.join(problems)}).")


def load_clip_weights(weights, trust=False):
    """OpenAI's RN50 in open_clip (QuickGELU), from the 'openai' tag or a local file."""
    import logging
    import open_clip
    if weights == "openai":
        try:
            model, _, transform = open_clip.create_model_and_transforms(CLIP_ARCHITECTURE, pretrained="openai")
        except (OSError, RuntimeError) as error:  # open_clip wraps download failures in RuntimeError
            raise UserError(f"open_clip could not fetch OpenAI's RN50 weights ({str(error).splitlines()[0]}); "
                            "download RN50.pt elsewhere and pass --clip-weights PATH.") from None
        return model, transform
    # Build without weights (silencing open_clip's "initialized randomly") then load the file.
    logging.disable(logging.WARNING)
    try:
        model, _, transform = open_clip.create_model_and_transforms(CLIP_ARCHITECTURE)
    finally:
        logging.disable(logging.NOTSET)
    state_dict = read_clip_state_dict(weights, trust)
    check_state_dict(model, state_dict, f"the CLIP weights {weights}")
    model.load_state_dict(state_dict)
    return model, transform


def clip_prompt_templates(prompts):
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES
    return OPENAI_IMAGENET_TEMPLATES if prompts == "ensemble" else (SINGLE_PROMPT,)


def file_identity(path):
    """What names a weights file's content: its size and SHA-256 (mtime and path can change)."""
    import hashlib
    path = Path(path).expanduser().resolve()
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 22), b""):
            digest.update(block)
    return {"path": str(path), "bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def clip_weights_identity(weights):
    if weights == "openai":
        import open_clip
        return {"tag": "openai", "open_clip": open_clip.__version__}
    return file_identity(weights)


def text_classifier_path(cache_dir, weights_identity, templates, class_names):
    """Cache file of CLIP's text classifier, keyed by everything it depends on."""
    import hashlib
    prompt_texts = [t if isinstance(t, str) else t("{}") for t in templates]
    key = json.dumps([CLIP_ARCHITECTURE, weights_identity, prompt_texts, list(class_names)])
    return Path(cache_dir) / f"clip-text-classifier-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npy"


def clip_text_classifier(clip, templates, class_names, device, cache_path):
    """[D, K] unit text embeddings averaged over templates; read from / written to cache_path,
    since the 8,000 ensemble prompts cost minutes on a CPU."""
    import open_clip
    import torch
    if cache_path.is_file():
        try:
            return torch.from_numpy(np.load(cache_path, allow_pickle=False))
        except (OSError, ValueError):
            print(f"warning: ignoring the damaged text-classifier cache {cache_path}.", file=sys.stderr)
    with torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
        classifier = open_clip.build_zero_shot_classifier(
            clip, tokenizer=open_clip.get_tokenizer(CLIP_ARCHITECTURE), classnames=class_names,
            templates=templates, device=device, use_tqdm=True).float().cpu()
    write_atomic(cache_path, lambda f: np.save(f, classifier.numpy()))
    return classifier


def build_clip_zero_shot(weights, prompts, class_names, device, cache_dir, trust=False):
    """CLIP RN50 as a classifier over `class_names`: logit_scale.exp() x cosine similarity.
    Returns (module, transform, identity of the weights)."""
    import torch

    class ZeroShotCLIP(torch.nn.Module):
        def __init__(self, clip, classifier):
            super().__init__()
            self.clip = clip
            self.register_buffer("classifier", classifier)

        def forward(self, images):
            features = self.clip.encode_image(images, normalize=True)
            return self.clip.logit_scale.exp() * features @ self.classifier.to(features.dtype)

    clip, transform = load_clip_weights(weights, trust)
    clip = clip.to(device).eval()
    identity = clip_weights_identity(weights)
    templates = clip_prompt_templates(prompts)
    classifier = clip_text_classifier(clip, templates, class_names, device,
                                      text_classifier_path(cache_dir, identity, templates, class_names))
    return ZeroShotCLIP(clip, classifier.to(device)), transform, identity


def debiaspl_state_dict(checkpoint, branch):
    """torchvision ResNet-50 keys from the FixMatch wrapper's `module.<branch>.{backbone,fc}.*`."""
    state_dict = checkpoint.get("state_dict") if isinstance(checkpoint, dict) else None
    if not isinstance(state_dict, dict):
        raise UserError("the DebiasPL checkpoint has no 'state_dict' entry.")
    prefix = f"{branch}."
    branch_weights = {}
    for key, value in state_dict.items():
        key = key.removeprefix("module.")
        if key.startswith(prefix):
            branch_weights[key[len(prefix):].removeprefix("backbone.")] = value
    if not branch_weights:
        branches = sorted({key.removeprefix("module.").split(".")[0] for key in state_dict})
        raise UserError(f"the DebiasPL checkpoint has no '{branch}' branch (its state_dict holds "
                        f"{', '.join(branches)}); choose --branch accordingly.")
    return branch_weights


def build_debiaspl(checkpoint_path, branch, imagenet_indices, trust=False):
    """DebiasPL's ResNet-50 with its 1000 ImageNet-1k logits cut down to the dataset's classes."""
    import torch
    import torchvision
    from torchvision import transforms

    class ClassColumns(torch.nn.Module):
        def __init__(self, network, columns):
            super().__init__()
            self.network = network
            self.register_buffer("columns", torch.as_tensor(columns, dtype=torch.long))

        def forward(self, images):
            return self.network(images).index_select(1, self.columns)

    network = torchvision.models.resnet50()
    checkpoint = read_checkpoint(checkpoint_path, "DebiasPL checkpoint", trust)
    state_dict = debiaspl_state_dict(checkpoint, branch)
    check_state_dict(network, state_dict, f"the {branch} branch of {checkpoint_path}")
    network.load_state_dict(state_dict)
    transform = transforms.Compose([
        transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    return ClassColumns(network, imagenet_indices), transform, file_identity(checkpoint_path)


# ---------------------------------------------------------------------------------------------
# Inference

@dataclass
class Unreadable:
    """Stands in for an image file that cannot be decoded; `reason` says why."""
    reason: str


def load_rgb(path):
    """Any image (grayscale, CMYK, a PNG named .JPEG) as RGB, or Unreadable (truncated, corrupt).

    Module-level, like the classes below, so DataLoader workers can receive it under any start
    method."""
    from PIL import Image
    try:
        with open(path, "rb") as file:
            return Image.open(file).convert("RGB")
    except Exception as error:  # PIL raises OSError, SyntaxError, ValueError... on bad files
        return Unreadable(str(error) or type(error).__name__)


class TransformReadable:
    """Apply the model's transform to readable images and pass Unreadable through."""

    def __init__(self, transform):
        self.transform = transform

    def __call__(self, image):
        return image if isinstance(image, Unreadable) else self.transform(image)


def collate_readable(batch):
    """(images, labels) of the readable samples, and [(position in batch, reason)] of the rest."""
    from torch.utils.data import default_collate
    readable = [sample for sample in batch if not isinstance(sample[0], Unreadable)]
    unreadable = [(position, image.reason) for position, (image, _) in enumerate(batch)
                  if isinstance(image, Unreadable)]
    images, labels = default_collate(readable) if readable else (None, None)
    return images, labels, unreadable


def run_inference(model, dataset, device, batch_size, workers, skip_bad_images):
    """Logits [N', K] float32, labels [N'], kept sample indices [N'] and {index: reason} of the
    unreadable samples, in dataset order. Without skip_bad_images the first batch holding
    unreadable files stops the run (a UserError naming them), before anything is written."""
    import torch
    from tqdm import tqdm
    on_cuda = device.type == "cuda"
    torch.backends.cudnn.benchmark = on_cuda  # every batch is 224 x 224: tune convolutions once
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False,
                                         num_workers=workers, pin_memory=on_cuda,
                                         collate_fn=collate_readable)
    model = model.to(device, memory_format=torch.channels_last).eval()
    all_logits, all_labels, unreadable = [], [], {}
    with torch.inference_mode():
        for batch_index, (images, labels, bad) in enumerate(tqdm(loader, desc="inference", unit="batch")):
            unreadable.update({batch_index * batch_size + position: reason for position, reason in bad})
            if bad and not skip_bad_images:
                named = "; ".join(f"{dataset.samples[i][0]} ({reason})" for i, reason in unreadable.items())
                raise UserError(f"cannot read {named}: fix or remove the file(s), or pass "
                                "--skip-bad-images to evaluate the other images.")
            if images is None:
                continue
            images = images.to(device, non_blocking=True, memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.float16, enabled=on_cuda):
                logits = model(images)
            all_logits.append(logits.float().cpu())
            all_labels.append(labels)
    if not all_logits:
        raise UserError("none of the images could be read.")
    kept = np.array([i for i in range(len(dataset)) if i not in unreadable], dtype=np.int64)
    return (torch.cat(all_logits).numpy(), torch.cat(all_labels).numpy().astype(np.int64), kept,
            unreadable)


def file_list_identity(paths):
    """SHA-256 of the dataset's relative file list: tells whether a cache saw the same images."""
    import hashlib
    return hashlib.sha256("\n".join(sorted(paths)).encode()).hexdigest()


def predict(args):
    """Run the chosen model over the folder: the Predictions that every analysis starts from."""
    from torchvision.datasets import ImageFolder
    val_dir = resolve_val_dir(args.data)
    wnids = find_class_folders(val_dir)
    imagenet_indices, names = describe_classes(wnids)
    warn_if_not_imagenet100(wnids)
    # Scan the files before loading a model, so a wrong folder fails in seconds.
    dataset = ImageFolder(val_dir, loader=load_rgb, allow_empty=True)
    if dataset.classes != wnids:
        raise UserError(f"{val_dir} changed while it was being read; run again.")
    if not dataset.samples:
        raise UserError(f"the class folders of {val_dir} hold no image files.")
    device = resolve_device(args.device)
    if args.model == "clip":
        model, transform, identity = build_clip_zero_shot(
            args.clip_weights, args.prompts, names, device, Path(args.out) / "cache", args.trust_checkpoint)
        settings = {"weights": str(args.clip_weights), "prompts": args.prompts}
    else:
        model, transform, identity = build_debiaspl(args.checkpoint, args.branch, imagenet_indices,
                                                    args.trust_checkpoint)
        settings = {"weights": str(args.checkpoint), "branch": args.branch}
    dataset.transform = TransformReadable(transform)
    logits, labels, kept, unreadable = run_inference(model, dataset, device, args.batch_size,
                                                     args.workers, args.skip_bad_images)
    all_paths = [os.path.relpath(path, val_dir) for path, _ in dataset.samples]
    for index, reason in unreadable.items():
        print(f"skipped unreadable image {dataset.samples[index][0]} ({reason})", file=sys.stderr)
    meta = {"model": args.model, **settings, "weights_identity": identity, "data": str(val_dir),
            "image_files": len(all_paths), "file_list_sha256": file_list_identity(all_paths),
            "skipped": [all_paths[i] for i in unreadable], "device": str(device)}
    return Predictions(logits=logits.astype(np.float32), labels=labels,
                       paths=np.array([all_paths[i] for i in kept], dtype=str),
                       wnids=np.array(wnids), names=np.array(names), meta=meta)


# ---------------------------------------------------------------------------------------------
# Analysis (numpy only)

def none_if_nan(value):
    return None if np.isnan(value) else float(value)


def reference_order(out_dir, model, wnids, meta=None):
    """Class order of the figures: the model's own for clip, clip's own order for the others.
    Given this run's meta, also warn when clip's run saw other image files."""
    if model == REFERENCE_MODEL:
        return None
    path = Path(out_dir) / REFERENCE_MODEL / "metrics.json"
    if not path.is_file():
        raise UserError(f"{path} does not exist: run `python starter.py --model clip` first, "
                        f"with the same --out, so that --model {model} can keep clip's class order.")
    reference = read_json(path, "clip's metrics")
    if sorted(reference["own_order"]) != sorted(wnids):
        raise UserError(f"{path} was made on other classes than this dataset's; run --model clip "
                        "again on this dataset.")
    theirs = reference.get("settings", {}).get("file_list_sha256")
    ours = (meta or {}).get("file_list_sha256")
    if theirs and ours and theirs != ours:
        print(f"warning: clip's run in {out_dir} saw other image files than this {model} run; its "
              "class order still applies, but the two runs are not on the same images.",
              file=sys.stderr)
    return reference["own_order"]


def list_image_files(val_dir):
    """Relative paths of the files ImageFolder would load from val_dir's class folders."""
    return [os.path.relpath(os.path.join(root, name), val_dir)
            for class_dir in find_class_folders(val_dir)
            for root, _, names in os.walk(Path(val_dir) / class_dir, followlinks=True)
            for name in names if name.lower().endswith(IMAGE_EXTENSIONS)]


def cache_differences(meta, args):
    """How the options of this --from-cache run differ from those that made the cache."""
    differences = [f"--{option} {meta[option]}, not {getattr(args, option)}"
                   for option in ("prompts", "branch")
                   if option in meta and meta[option] != getattr(args, option)]
    weights_option = {"clip": "clip_weights", "debiaspl": "checkpoint"}.get(meta["model"])
    cached_file = meta.get("weights_identity", {}).get("path")
    if weights_option and cached_file:
        weights = Path(str(getattr(args, weights_option))).expanduser()
        if weights.is_file() and (str(weights.resolve()) != cached_file
                                  or weights.stat().st_size != meta["weights_identity"]["bytes"]):
            differences.append(f"the weights {cached_file}, not {weights}")
    data = Path(args.data).expanduser()
    if meta.get("file_list_sha256") and data.is_dir():
        val_dir = resolve_val_dir(data)
        if file_list_identity(list_image_files(val_dir)) != meta["file_list_sha256"]:
            differences.append(f"other image files than {val_dir} holds now")
    return differences


def summarize(predictions, confusion, order_wnids=None):
    """metrics.json: accuracies, the class order and per-class counts, precision and recall."""
    precision, recall = metrics.precision_recall(confusion)
    predicted_counts = confusion.sum(axis=0)
    own_order = [str(predictions.wnids[i]) for i in metrics.prediction_order(predicted_counts)]
    classes = [{"wnid": str(wnid), "name": str(name), "true_count": int(true_count),
                "predicted_count": int(predicted_count), "precision": none_if_nan(p),
                "recall": none_if_nan(r)}
               for wnid, name, true_count, predicted_count, p, r in zip(
                   predictions.wnids, predictions.names, confusion.sum(axis=1), predicted_counts,
                   precision, recall)]
    return {
        "model": predictions.meta["model"],
        "num_images": int(len(predictions.labels)),
        "accuracy": metrics.accuracy(confusion),
        "top5_accuracy": metrics.top_k_accuracy(predictions.logits, predictions.labels, 5),
        "balanced_accuracy": metrics.balanced_accuracy(recall),
        "order": order_wnids or own_order,
        "own_order": own_order,
        "classes": classes,
        "skipped": predictions.meta.get("skipped", []),
        "settings": predictions.meta,
    }


def centroid_roles(summary, reference_summary_order=None):
    """(role, wnid) pairs of Q1c (clip) or Q2c (the other models: also clip's two classes)."""
    roles = [("most predicted", summary["own_order"][0]),
             ("least predicted", summary["own_order"][-1])]
    if reference_summary_order is not None:
        roles += [(f"most predicted by {REFERENCE_MODEL}", reference_summary_order[0]),
                  (f"least predicted by {REFERENCE_MODEL}", reference_summary_order[-1])]
    return roles


GROUPINGS = {
    "by_predicted": ("predicted label", "no image is predicted as this class, so it has no centroid"),
    "by_true": ("true label", "this class has no images, so it has no centroid"),
}


def centroid_neighbours(predictions, roles):
    """centroids.json: each role's 10 nearest class centroids, for both groupings."""
    num_classes = len(predictions.wnids)
    index_of = {str(wnid): index for index, wnid in enumerate(predictions.wnids)}
    groups = {"by_predicted": metrics.predicted_labels(predictions.logits),
              "by_true": predictions.labels}
    result = {}
    for grouping, (_, empty_note) in GROUPINGS.items():
        centroids = metrics.class_centroids(predictions.logits, groups[grouping], num_classes)
        queries = []
        for role, wnid in roles:
            neighbours, cosines = metrics.nearest_centroids(centroids, index_of[wnid], NEIGHBOR_COUNT)
            query = {"role": role, "wnid": wnid, "name": str(predictions.names[index_of[wnid]]),
                     "neighbors": [{"wnid": str(predictions.wnids[i]), "name": str(predictions.names[i]),
                                    "cosine": float(c)} for i, c in zip(neighbours, cosines)]}
            if not query["neighbors"]:
                query["note"] = empty_note
            queries.append(query)
        result[grouping] = {"queries": queries}
    return result


def draw_figures(summary, confusion, model_title):
    """{file name: Figure} of Q(a) and Q(b), classes in summary['order']."""
    index_of = {entry["wnid"]: index for index, entry in enumerate(summary["classes"])}
    order = [index_of[wnid] for wnid in summary["order"]]
    ordered = [summary["classes"][index] for index in order]
    names = [entry["name"] for entry in ordered]
    counts = np.array([entry["predicted_count"] for entry in ordered])
    balanced = summary["num_images"] / len(ordered)
    order_note = "" if summary["order"] == summary["own_order"] else f", in {REFERENCE_MODEL}'s order"
    figures = {}
    for quantity in ("precision", "recall"):
        values = np.array([np.nan if entry[quantity] is None else entry[quantity] for entry in ordered])
        figures[f"histogram_{quantity}.png"] = plotting.prediction_histogram(
            counts, values, names, quantity, balanced,
            title=f"{model_title}: predictions per class{order_note}, with {quantity}")
    figures["confusion_matrix.png"] = plotting.confusion_matrix_figure(
        confusion[np.ix_(order, order)], names, title=f"{model_title}: confusion matrix{order_note}")
    return figures


def analyze(predictions, run_dir, out_dir):
    """Write metrics.json, centroids.json and the figures of one run; return the two JSONs."""
    model = predictions.meta["model"]
    order_wnids = reference_order(out_dir, model, [str(w) for w in predictions.wnids],
                                  predictions.meta)
    predicted = metrics.predicted_labels(predictions.logits)
    confusion = metrics.confusion_matrix(predictions.labels, predicted, len(predictions.wnids))
    summary = summarize(predictions, confusion, order_wnids)
    centroids = centroid_neighbours(predictions, centroid_roles(summary, order_wnids))
    # Everything is computed and drawn before the first file is written.
    figures = draw_figures(summary, confusion, MODEL_TITLES.get(model, model))
    write_json(run_dir / "metrics.json", summary)
    write_json(run_dir / "centroids.json", centroids)
    for name, figure in figures.items():
        write_figure(run_dir / name, figure)
    return summary, centroids


def format_report(summary, centroids):
    """What the homework report needs, as terminal text."""
    by_wnid = {entry["wnid"]: entry for entry in summary["classes"]}
    lines = [f"== {summary['model']}: {summary['num_images']} images, {len(by_wnid)} classes ==",
             f"accuracy {summary['accuracy']:.4f}   top-5 {summary['top5_accuracy']:.4f}   "
             f"balanced accuracy {summary['balanced_accuracy']:.4f}"]
    for role, wnid in (("most predicted", summary["own_order"][0]),
                       ("least predicted", summary["own_order"][-1])):
        entry = by_wnid[wnid]
        tied = sum(e["predicted_count"] == entry["predicted_count"] for e in summary["classes"]) - 1
        lines.append(f"{role}: {entry['name']} ({wnid}): {entry['predicted_count']} predictions, "
                     f"{entry['true_count']} images" + (f"; tied with {tied} other classes, "
                                                         "broken by class index" if tied else ""))
    for grouping, (grouped_by, _) in GROUPINGS.items():
        lines.append(f"-- centroid neighbours (images grouped by {grouped_by}) --")
        for query in centroids[grouping]["queries"]:
            lines.append(f"{query['role']}: {query['name']} ({query['wnid']})")
            if query.get("note"):
                lines.append(f"  {query['note']}")
                continue
            lines.append("  classes: " + ", ".join(n["name"] for n in query["neighbors"]))
            lines.append("  cosine:  [" + ", ".join(f"{n['cosine']:.4f}" for n in query["neighbors"]) + "]")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# clip-la: training-free logit adjustment of clip's cached logits (numpy only, no inference)

def load_clip_cache(out_dir):
    path = Path(out_dir) / REFERENCE_MODEL / "predictions.npz"
    if not path.is_file():
        raise UserError(f"--model {LOGIT_ADJUSTED_MODEL} adjusts clip's cached logits but {path} "
                        "does not exist: run `python starter.py --model clip` first, with the same --out.")
    return load_predictions(path)


def lambda_sweep(logits, labels, priors, strengths):
    """(accuracy, balanced accuracy) arrays of logits − λ·log(priors), one entry per λ in strengths."""
    num_classes = logits.shape[1]
    accuracy, balanced = [], []
    for strength in strengths:
        predicted = metrics.predicted_labels(logit_adjustment.adjust_logits(logits, priors, strength))
        confusion = metrics.confusion_matrix(labels, predicted, num_classes)
        accuracy.append(metrics.accuracy(confusion))
        balanced.append(metrics.balanced_accuracy(metrics.precision_recall(confusion)[1]))
    return np.array(accuracy), np.array(balanced)


def adjust_clip_predictions(args, out_dir, run_dir):
    """clip-la's Predictions (clip's cached logits − λ·log p̂); writes prior.json and la_sweep.png."""
    clip = load_clip_cache(out_dir)
    # Stop before writing anything when clip's class order cannot be used.
    reference_order(out_dir, LOGIT_ADJUSTED_MODEL, [str(wnid) for wnid in clip.wnids])
    batches = logit_adjustment.shuffled_batches(len(clip.labels), args.batch_size, args.la_seed,
                                                args.la_passes)
    estimate = logit_adjustment.estimate_prior(clip.logits, batches, args.la_momentum,
                                               args.la_threshold)
    priors = estimate.prior if args.la_mode == "final" else estimate.image_priors
    settings = {"momentum": args.la_momentum, "threshold": args.la_threshold,
                "lambda": args.la_lambda, "mode": args.la_mode, "seed": args.la_seed,
                "passes": args.la_passes,
                "batch_size": args.batch_size, "num_batches": estimate.num_batches,
                "num_updating_batches": estimate.num_updating_batches}
    strengths = np.union1d(LAMBDA_SWEEP, [args.la_lambda])  # the chosen λ lies on the curves
    accuracy, balanced = lambda_sweep(clip.logits, clip.labels, priors, strengths)
    write_json(run_dir / "prior.json", {
        "model": LOGIT_ADJUSTED_MODEL,
        "settings": settings,
        "classes": [{"wnid": str(wnid), "name": str(name), "prior": float(prior)}
                    for wnid, name, prior in zip(clip.wnids, clip.names, estimate.prior)],
        "lambda_sweep": [{"lambda": float(strength), "accuracy": float(a), "balanced_accuracy": float(b)}
                         for strength, a, b in zip(strengths, accuracy, balanced)],
    })
    write_figure(run_dir / "la_sweep.png", plotting.lambda_sweep_figure(
        strengths, accuracy, balanced, args.la_lambda,
        title=f"{MODEL_TITLES[LOGIT_ADJUSTED_MODEL]}: {args.la_mode} p̂ "
              f"(m = {args.la_momentum:g}, τ = {args.la_threshold:g})"))
    if estimate.num_updating_batches == 0:
        print(f"warning: no image reached softmax confidence τ = {args.la_threshold:g}, so p̂ stayed "
              "uniform and clip-la's predictions are clip's; lower --la-threshold.", file=sys.stderr)
    else:
        ranked = np.argsort(-estimate.prior, kind="stable")
        print(f"p̂ updated by {estimate.num_updating_batches} of {estimate.num_batches} batches; "
              f"largest {estimate.prior[ranked[0]]:.4f} ({clip.names[ranked[0]]}), smallest "
              f"{estimate.prior[ranked[-1]]:.4f} ({clip.names[ranked[-1]]}), uniform {1 / len(ranked):.4f}")
    meta = {"model": LOGIT_ADJUSTED_MODEL, "logit_adjustment": settings,
            "adjusted_cache": str(Path(out_dir) / REFERENCE_MODEL / "predictions.npz"),
            "clip": clip.meta}
    return Predictions(
        logits=logit_adjustment.adjust_logits(clip.logits, priors, args.la_lambda).astype(np.float32),
        labels=clip.labels, paths=clip.paths, wnids=clip.wnids, names=clip.names, meta=meta)


# ---------------------------------------------------------------------------------------------

def run(args):
    out_dir = Path(args.out)
    run_dir = out_dir / args.model
    cache = run_dir / "predictions.npz"
    if args.from_cache:
        predictions = load_predictions(cache)
        for difference in cache_differences(predictions.meta, args):
            print(f"note: {cache} was made with {difference}; its results are shown as cached.",
                  file=sys.stderr)
    elif args.model == LOGIT_ADJUSTED_MODEL:
        predictions = adjust_clip_predictions(args, out_dir, run_dir)
        save_predictions(cache, predictions)
    else:
        reference_order(out_dir, args.model, find_class_folders(resolve_val_dir(args.data)))
        predictions = predict(args)
        save_predictions(cache, predictions)
    summary, centroids = analyze(predictions, run_dir, out_dir)
    print(format_report(summary, centroids))
    print(f"outputs in {run_dir}")


def run_demo(args):
    """Random weights in the real formats and a generated folder, through the real CLI."""
    import synthetic
    demo_out = Path(args.out) / "demo"
    print("DEMO: random weights on generated images. Every number and figure it produces is "
          "meaningless; it only shows that the pipeline runs end to end.")
    with tempfile.TemporaryDirectory(prefix="debiaspl-demo-") as scratch:
        scratch = Path(scratch)
        files = synthetic.write_demo_inputs(scratch)
        common = ["--data", str(files.data), "--out", str(demo_out), "--device", args.device,
                  "--batch-size", str(args.batch_size), "--workers", str(args.workers)]
        run(build_parser().parse_args(["--model", "clip", "--clip-weights", str(files.clip_weights),
                                       "--prompts", "single", *common]))
        run(build_parser().parse_args(["--model", "debiaspl", "--checkpoint",
                                       str(files.debiaspl_checkpoint), *common]))
        run(build_parser().parse_args(["--model", LOGIT_ADJUSTED_MODEL, *common]))
    write_report(demo_out)
    print(f"DEMO done (meaningless numbers): see {demo_out}")


def write_report(out_dir):
    import report
    for path in report.write_report(out_dir):
        print(f"wrote {path}")


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.demo and not args.model and not args.report:
        parser.error(f"choose --model {'|'.join(MODEL_TITLES)}, --demo or --report")
    if args.batch_size < 1 or args.workers < 0 or args.la_passes < 1:
        parser.error("--batch-size and --la-passes must be at least 1, --workers at least 0")
    try:
        if args.demo:
            run_demo(args)  # its report included
        elif args.model:
            run(args)
        if args.report and not args.demo:
            write_report(Path(args.out))
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: outputs already written are complete; nothing is half-written.",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    # report.py and synthetic.py import starter: register this script under that name, or they
    # would load a second copy with its own UserError class.
    sys.modules.setdefault("starter", sys.modules[__name__])
    sys.exit(main())
