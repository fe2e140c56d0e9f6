"""Classes: the data folder's ImageNet wnids, their ImageNet-1k indices and CLIP's class names.

Reads folders and tables only (stdlib and numpy), so caches are checked without torch.
"""
import csv
import os
import sys
from pathlib import Path

from outputs import UserError

PROJECT_DIR = Path(__file__).resolve().parent
IMAGENET100_TABLE = PROJECT_DIR / "imagenet100.tsv"
# What torchvision's ImageFolder loads (its IMG_EXTENSIONS), kept here so caches are checked
# without importing torch.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def resolve_val_dir(data):
    """The folder of wnid folders: DATA/val when it exists, else DATA itself."""
    root = Path(data).expanduser()
    if not root.is_dir():
        raise UserError(f"the data folder {root} does not exist; pass --data or set "
                        "IMAGENET100_ROOT.")
    return root / "val" if (root / "val").is_dir() else root


def find_class_folders(val_dir):
    wnids = sorted(entry.name for entry in os.scandir(val_dir) if entry.is_dir())
    if not wnids:
        raise UserError(f"{val_dir} holds no class folders; --data must point to ImageNet100's "
                        "root or its val folder.")
    return wnids


def list_image_files(val_dir):
    """Relative paths of the files ImageFolder would load from val_dir's class folders."""
    return [os.path.relpath(os.path.join(root, name), val_dir)
            for class_dir in find_class_folders(val_dir)
            for root, _, names in os.walk(Path(val_dir) / class_dir, followlinks=True)
            for name in names if name.lower().endswith(IMAGE_EXTENSIONS)]


def file_list_identity(paths):
    """SHA-256 of the dataset's relative file list: tells whether a cache saw the same images."""
    import hashlib
    return hashlib.sha256("\n".join(sorted(paths)).encode()).hexdigest()


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
