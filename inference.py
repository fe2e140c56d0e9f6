"""Inference: the DataLoader loop over an image folder, and `predict`, which turns a folder and a
model into the Predictions every analysis starts from.
"""
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import classes
import models
from cache import Predictions
from outputs import UserError


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


def run_inference(model, dataset, device, precision, batch_size, workers, skip_bad_images):
    """Logits [N', K] float32, labels [N'], kept sample indices [N'] and {index: reason} of the
    unreadable samples, in dataset order. Without skip_bad_images the first batch holding
    unreadable files stops the run (a UserError naming them), before anything is written.
    `precision` as set by models.set_precision: fp32, or fp16 / bf16 autocast."""
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
            with models.autocast(device, precision):
                logits = model(images)
            # Kept on the device: a per-batch .cpu() would make the loop wait for each forward.
            all_logits.append(logits.float())
            all_labels.append(labels)
    if not all_logits:
        raise UserError("none of the images could be read.")
    kept = np.array([i for i in range(len(dataset)) if i not in unreadable], dtype=np.int64)
    return (torch.cat(all_logits).cpu().numpy(), torch.cat(all_labels).numpy().astype(np.int64), kept,
            unreadable)


def predict(args):
    """Run the chosen model over the folder: the Predictions that every analysis starts from."""
    from torchvision.datasets import ImageFolder
    val_dir = classes.resolve_val_dir(args.data)
    wnids = classes.find_class_folders(val_dir)
    imagenet_indices, names = classes.describe_classes(wnids, args.class_names)
    classes.warn_if_not_imagenet100(wnids)
    # Scan the files before loading a model, so a wrong folder fails in seconds.
    dataset = ImageFolder(val_dir, loader=load_rgb, allow_empty=True)
    if dataset.classes != wnids:
        raise UserError(f"{val_dir} changed while it was being read; run again.")
    if not dataset.samples:
        raise UserError(f"the class folders of {val_dir} hold no image files.")
    device = models.resolve_device(args.device)
    models.set_precision(device, args.precision)
    if args.model == "clip":
        model, transform, identity = models.build_clip_zero_shot(
            args.clip_weights, args.prompts, names, device, args.precision, Path(args.out) / "cache",
            args.trust_checkpoint)
        settings = {"weights": str(args.clip_weights), "prompts": args.prompts}
    else:
        model, transform, identity = models.build_debiaspl(args.checkpoint, args.branch,
                                                           imagenet_indices, args.trust_checkpoint)
        settings = {"weights": str(args.checkpoint), "branch": args.branch}
    dataset.transform = TransformReadable(transform)
    logits, labels, kept, unreadable = run_inference(model, dataset, device, args.precision,
                                                     args.batch_size, args.workers,
                                                     args.skip_bad_images)
    all_paths = [os.path.relpath(path, val_dir) for path, _ in dataset.samples]
    for index, reason in unreadable.items():
        print(f"skipped unreadable image {dataset.samples[index][0]} ({reason})", file=sys.stderr)
    meta = {"model": args.model, **settings, "class_names": args.class_names,
            "weights_identity": identity, "data": str(val_dir),
            "image_files": len(all_paths), "file_list_sha256": classes.file_list_identity(all_paths),
            "skipped": [all_paths[i] for i in unreadable], "device": str(device),
            "precision": args.precision}
    return Predictions(logits=logits.astype(np.float32), labels=labels,
                       paths=np.array([all_paths[i] for i in kept], dtype=str),
                       wnids=np.array(wnids), names=np.array(names), meta=meta)
