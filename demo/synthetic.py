"""Stand-ins for what never reaches this machine: ImageNet100 and the two sets of weights.

Everything here is written in the real formats so that the real loading code runs on it:
- an ImageFolder of real ImageNet wnids with the awkward files real ImageNet holds (a grayscale
  JPEG, a CMYK JPEG, a PNG named .JPEG);
- an open_clip RN50-quickgelu state dict saved with torch.save;
- a DebiasPL FixMatch checkpoint (.pth.tar): {'epoch', 'arch', 'state_dict', 'best_acc1',
  'optimizer'} with `module.{main,ema}.{backbone,fc}.*` keys and main != ema.
Used by `starter.py --demo` and by the tests. The weights are random: outputs mean nothing.
"""
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sources import classes


def imagenet100_wnids():
    return [row["wnid"] for row in classes.read_imagenet100_table()]


def write_image_folder(val_dir, wnids, images_per_class, seed=0, size=(80, 64)):
    """val_dir/<wnid>/*.JPEG of smooth random colour fields; returns the image paths written.

    The first three images of the first class are a grayscale JPEG, a CMYK JPEG and a PNG saved
    under a .JPEG name, as in real ImageNet.
    """
    from PIL import Image
    rng = np.random.default_rng(seed)
    written = []
    for class_index, wnid in enumerate(wnids):
        folder = Path(val_dir) / wnid
        folder.mkdir(parents=True, exist_ok=True)
        for image_index in range(images_per_class):
            coarse = rng.integers(0, 256, size=(4, 5, 3), dtype=np.uint8)
            image = Image.fromarray(coarse).resize(size, Image.BILINEAR)
            path = folder / f"ILSVRC2012_val_{class_index:04d}{image_index:04d}.JPEG"
            odd_format = image_index if class_index == 0 else None
            if odd_format == 0:
                image.convert("L").save(path, format="JPEG")
            elif odd_format == 1:
                image.convert("CMYK").save(path, format="JPEG")
            elif odd_format == 2:
                image.save(path, format="PNG")
            else:
                image.save(path, format="JPEG", quality=90)
            written.append(path)
    return written


def random_clip_state_dict(seed=0):
    """State dict of a randomly initialised open_clip RN50-quickgelu."""
    import logging
    import open_clip
    import torch
    torch.manual_seed(seed)
    logging.disable(logging.WARNING)  # open_clip warns that the model is randomly initialised
    try:
        model = open_clip.create_model("RN50-quickgelu")
    finally:
        logging.disable(logging.NOTSET)
    return model.state_dict()


def write_clip_weights(path, seed=0):
    import torch
    torch.save(random_clip_state_dict(seed), path)
    return Path(path)


def random_resnet50_state_dict(seed):
    """A torchvision ResNet-50 state dict with random weights and random BatchNorm statistics."""
    import torch
    import torchvision
    torch.manual_seed(seed)
    network = torchvision.models.resnet50()
    state_dict = network.state_dict()
    for key, value in state_dict.items():
        # Non-trivial running statistics make main and ema differ in BatchNorm too.
        if key.endswith("running_mean"):
            value.normal_(0, 0.1)
        elif key.endswith("running_var"):
            value.uniform_(0.5, 2.0)
    return state_dict


def fixmatch_state_dict(main, ema):
    """The DebiasPL wrapper's keys: DataParallel's `module.`, then main/ema, backbone/fc."""
    wrapped = {}
    for branch, state_dict in (("main", main), ("ema", ema)):
        for key, value in state_dict.items():
            part = "" if key.startswith("fc.") else "backbone."
            wrapped[f"module.{branch}.{part}{key}"] = value
    return wrapped


def write_debiaspl_checkpoint(path, seed=0, best_acc1=None):
    """A FixMatch-format checkpoint whose main and ema branches hold different random weights."""
    import torch
    state_dict = fixmatch_state_dict(random_resnet50_state_dict(seed), random_resnet50_state_dict(seed + 1))
    parameters = [value for key, value in state_dict.items() if value.is_floating_point()
                  and "running" not in key and ".main." in key]
    optimizer = torch.optim.SGD(parameters, lr=0.03, momentum=0.9, weight_decay=1e-4)
    torch.save({"epoch": 50, "arch": "FixMatch", "state_dict": state_dict,
                "best_acc1": torch.tensor(0.0) if best_acc1 is None else best_acc1,
                "optimizer": optimizer.state_dict()}, path)
    return Path(path)


@dataclass
class DemoInputs:
    data: Path
    clip_weights: Path
    debiaspl_checkpoint: Path


def write_demo_inputs(folder, wnids=None, images_per_class=2, seed=0):
    """An ImageNet100-style root (folder/imagenet-100/val) and both weight files."""
    folder = Path(folder)
    data = folder / "imagenet-100"
    write_image_folder(data / "val", wnids or imagenet100_wnids(), images_per_class, seed)
    return DemoInputs(data=data,
                      clip_weights=write_clip_weights(folder / "RN50-random.pt", seed),
                      debiaspl_checkpoint=write_debiaspl_checkpoint(
                          folder / "debiaspl_zsl_random.pth.tar", seed))
