#!/usr/bin/env python3
"""How imbalanced are CLIP's pseudo-labels, and what does debiasing do to them?

Runs OpenAI's CLIP RN50 zero-shot (`--model clip`) or the DebiasPL zero-shot checkpoint
(`--model debiaspl`) over an ImageNet(100) validation folder and writes, under OUT/<model>/,
the cached logits, per-class metrics, the ordered histograms (Q1a/Q2a), the confusion matrix
(Q1b/Q2b) and the centroid neighbours (Q1c/Q2c) of homework 3.

    python starter.py --model clip
    python starter.py --model debiaspl
    python starter.py --demo            # random weights, generated images: checks the plumbing

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
}
FIGURE_DPI = 200


class UserError(Exception):
    """A mistake the user can fix (path, file, option): reported as one sentence, no traceback."""


def build_parser():
    parser = argparse.ArgumentParser(
        description="Pseudo-label imbalance of CLIP RN50 and DebiasPL on ImageNet100 (homework 3).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model", choices=sorted(MODEL_TITLES),
                        help="which model to evaluate: clip (Q1) or debiaspl (Q2; run clip first)")
    parser.add_argument("--demo", action="store_true",
                        help="generate a small ImageNet100-style folder and random weights in the "
                             "real file formats, run clip and debiaspl on them into OUT/demo/")
    parser.add_argument("--data", default=os.environ.get("IMAGENET100_ROOT", COURSE_DATA_DIR),
                        help="ImageNet100 root holding val/, or the val folder itself "
                             "(default: $IMAGENET100_ROOT, else the course's copy)")
    parser.add_argument("--out", default=str(PROJECT_DIR / "figures"),
                        help="output folder; each model writes to OUT/<model>/")
    parser.add_argument("--from-cache", action="store_true",
                        help="skip inference: redo metrics and figures from OUT/<model>/predictions.npz")
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
    inference = parser.add_argument_group("inference")
    inference.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto",
                           help="auto = cuda when available; fp16 autocast is used on cuda")
    inference.add_argument("--batch-size", type=int, default=64, help="images per forward pass")
    inference.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1),
                           help="data-loading processes (0 = load in the main process)")
    return parser


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
    write_atomic(path, lambda f: figure.savefig(f, format="png", dpi=FIGURE_DPI))


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
    path = Path(path)
    if not path.is_file():
        raise UserError(f"there is no cache at {path}; run without --from-cache first.")
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [key for key in PREDICTION_KEYS if key not in archive.files]
            if missing:
                raise UserError(f"the cache {path} lacks {', '.join(missing)}; run without "
                                "--from-cache to rebuild it.")
            loaded = {key: archive[key] for key in PREDICTION_KEYS}
    except UserError:
        raise
    except Exception as error:
        raise UserError(f"the cache {path} is damaged ({error}); run without --from-cache to "
                        "rebuild it.") from None
    loaded["meta"] = json.loads(str(loaded["meta"]))
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


def read_checkpoint(path, what):
    """torch.load without running code from the file (weights_only)."""
    import torch
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"the {what} {path} does not exist.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise UserError(f"{path} is not a readable PyTorch {what} ({str(error).splitlines()[0]})."
                        ) from None


def read_clip_state_dict(path):
    """An open_clip-layout state dict from OpenAI's TorchScript RN50.pt or a torch.save'd file."""
    import torch
    import zipfile
    path = Path(path).expanduser()
    if path.is_file() and zipfile.is_zipfile(path) and any(
            name.endswith("/code/__torch__.py") or "/code/" in name
            for name in zipfile.ZipFile(path).namelist()):
        # OpenAI's RN50.pt is a TorchScript archive: torch.jit.load reads it without unpickling
        # Python objects; its state dict has open_clip's key layout plus three int buffers.
        state_dict = torch.jit.load(str(path), map_location="cpu").state_dict()
        for key in ("input_resolution", "context_length", "vocab_size"):
            state_dict.pop(key, None)
        return state_dict
    checkpoint = read_checkpoint(path, "CLIP weights file")
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


def load_clip_weights(weights):
    """OpenAI's RN50 in open_clip (QuickGELU), from the 'openai' tag or a local file."""
    import logging
    import open_clip
    if weights == "openai":
        model, _, transform = open_clip.create_model_and_transforms(CLIP_ARCHITECTURE, pretrained="openai")
        return model, transform
    # Build without weights (silencing open_clip's "initialized randomly") then load the file.
    logging.disable(logging.WARNING)
    try:
        model, _, transform = open_clip.create_model_and_transforms(CLIP_ARCHITECTURE)
    finally:
        logging.disable(logging.NOTSET)
    state_dict = read_clip_state_dict(weights)
    check_state_dict(model, state_dict, f"the CLIP weights {weights}")
    model.load_state_dict(state_dict)
    return model, transform


def clip_prompt_templates(prompts):
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES
    return OPENAI_IMAGENET_TEMPLATES if prompts == "ensemble" else (SINGLE_PROMPT,)


def build_clip_zero_shot(weights, prompts, class_names, device):
    """CLIP RN50 as a classifier over `class_names`: logit_scale.exp() x cosine similarity."""
    import open_clip
    import torch

    class ZeroShotCLIP(torch.nn.Module):
        def __init__(self, clip, classifier):
            super().__init__()
            self.clip = clip
            self.register_buffer("classifier", classifier)

        def forward(self, images):
            features = self.clip.encode_image(images, normalize=True)
            return self.clip.logit_scale.exp() * features @ self.classifier.to(features.dtype)

    clip, transform = load_clip_weights(weights)
    clip = clip.to(device).eval()
    with torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
        classifier = open_clip.build_zero_shot_classifier(
            clip, tokenizer=open_clip.get_tokenizer(CLIP_ARCHITECTURE), classnames=class_names,
            templates=clip_prompt_templates(prompts), device=device, use_tqdm=True)
    return ZeroShotCLIP(clip, classifier.float()), transform


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


def build_debiaspl(checkpoint_path, branch, imagenet_indices):
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
    state_dict = debiaspl_state_dict(read_checkpoint(checkpoint_path, "DebiasPL checkpoint"), branch)
    check_state_dict(network, state_dict, f"the {branch} branch of {checkpoint_path}")
    network.load_state_dict(state_dict)
    transform = transforms.Compose([
        transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    return ClassColumns(network, imagenet_indices), transform


# ---------------------------------------------------------------------------------------------
# Inference

def load_rgb(path):
    """Any image (grayscale, CMYK, a PNG named .JPEG) as RGB."""
    from PIL import Image
    with open(path, "rb") as file:
        image = Image.open(file)
        return image.convert("RGB")


def run_inference(model, dataset, device, batch_size, workers):
    """[N, K] float32 logits and [N] labels, in dataset order."""
    import torch
    from tqdm import tqdm
    on_cuda = device.type == "cuda"
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False,
                                         num_workers=workers, pin_memory=on_cuda)
    model = model.to(device, memory_format=torch.channels_last).eval()
    all_logits, all_labels = [], []
    with torch.inference_mode():
        for images, labels in tqdm(loader, desc="inference", unit="batch"):
            images = images.to(device, non_blocking=True, memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.float16, enabled=on_cuda):
                logits = model(images)
            all_logits.append(logits.float().cpu())
            all_labels.append(labels)
    return torch.cat(all_logits).numpy(), torch.cat(all_labels).numpy().astype(np.int64)


def predict(args):
    """Run the chosen model over the folder: the Predictions that every analysis starts from."""
    from torchvision.datasets import ImageFolder
    val_dir = resolve_val_dir(args.data)
    wnids = find_class_folders(val_dir)
    imagenet_indices, names = describe_classes(wnids)
    warn_if_not_imagenet100(wnids)
    device = resolve_device(args.device)
    if args.model == "clip":
        model, transform = build_clip_zero_shot(args.clip_weights, args.prompts, names, device)
        settings = {"weights": str(args.clip_weights), "prompts": args.prompts}
    else:
        model, transform = build_debiaspl(args.checkpoint, args.branch, imagenet_indices)
        settings = {"weights": str(args.checkpoint), "branch": args.branch}
    dataset = ImageFolder(val_dir, transform=transform, loader=load_rgb, allow_empty=True)
    if dataset.classes != wnids:
        raise UserError(f"{val_dir} changed while it was being read; run again.")
    logits, labels = run_inference(model, dataset, device, args.batch_size, args.workers)
    paths = [os.path.relpath(path, val_dir) for path, _ in dataset.samples]
    meta = {"model": args.model, **settings, "data": str(val_dir), "device": str(device)}
    return Predictions(logits=logits.astype(np.float32), labels=labels, paths=np.array(paths, dtype=str),
                       wnids=np.array(wnids), names=np.array(names), meta=meta)


# ---------------------------------------------------------------------------------------------
# Analysis (numpy only)

def none_if_nan(value):
    return None if np.isnan(value) else float(value)


def reference_order(out_dir, model, wnids):
    """Class order of the figures: the model's own for clip, clip's own order for the others."""
    if model == REFERENCE_MODEL:
        return None
    path = Path(out_dir) / REFERENCE_MODEL / "metrics.json"
    if not path.is_file():
        raise UserError(f"{path} does not exist: run `python starter.py --model clip` first, "
                        f"with the same --out, so that --model {model} can keep clip's class order.")
    order = read_json(path, "clip's metrics")["own_order"]
    if sorted(order) != sorted(wnids):
        raise UserError(f"{path} was made on other classes than this dataset's; run --model clip "
                        "again on this dataset.")
    return order


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
        "accuracy": float(np.trace(confusion) / max(confusion.sum(), 1)),
        "top5_accuracy": metrics.top_k_accuracy(predictions.logits, predictions.labels, 5),
        "balanced_accuracy": metrics.balanced_accuracy(recall),
        "order": order_wnids or own_order,
        "own_order": own_order,
        "classes": classes,
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
    order_wnids = reference_order(out_dir, model, [str(w) for w in predictions.wnids])
    predicted = metrics.predicted_labels(predictions.logits)
    confusion = metrics.confusion_matrix(predictions.labels, predicted, len(predictions.wnids))
    summary = summarize(predictions, confusion, order_wnids)
    centroids = centroid_neighbours(predictions, centroid_roles(summary, order_wnids))
    write_json(run_dir / "metrics.json", summary)
    write_json(run_dir / "centroids.json", centroids)
    for name, figure in draw_figures(summary, confusion, MODEL_TITLES.get(model, model)).items():
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

def run(args):
    out_dir = Path(args.out)
    run_dir = out_dir / args.model
    cache = run_dir / "predictions.npz"
    if args.from_cache:
        predictions = load_predictions(cache)
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
    print(f"DEMO done (meaningless numbers): see {demo_out}")


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.demo and not args.model:
        parser.error("choose --model clip|debiaspl, or --demo")
    if args.batch_size < 1 or args.workers < 0:
        parser.error("--batch-size must be at least 1 and --workers at least 0")
    try:
        run_demo(args) if args.demo else run(args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: outputs already written are complete; nothing is half-written.",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
