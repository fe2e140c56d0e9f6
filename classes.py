"""Classes: the data folder's ImageNet wnids, their ImageNet-1k indices and class names.

Reads folders and the shipped class tables only (stdlib), so caches are checked, and debiaspl
runs, without torch, open_clip or timm being needed to name a class.
"""
import csv
import functools
import os
import sys
from pathlib import Path

from outputs import UserError

PROJECT_DIR = Path(__file__).resolve().parent
IMAGENET100_TABLE = PROJECT_DIR / "imagenet100.tsv"  # the standard 100 classes
# Every ImageNet-1k class; written by scripts/write_imagenet1k_table.py from open_clip and timm.
IMAGENET1K_TABLE = PROJECT_DIR / "imagenet1k.tsv"
TABLE_COLUMNS = ("wnid", "imagenet1k_index", "clip_name", "wordnet_name", "wordnet_lemmas")
# --class-names: OpenAI's curated names (CLIP's published protocol) or the first WordNet lemma
# (what the course's starter code and many homework solutions use).
CLASS_NAME_COLUMNS = {"openai": "clip_name", "wordnet": "wordnet_name"}
# What torchvision's ImageFolder loads (its IMG_EXTENSIONS), kept here so caches are checked
# without importing torch.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


SPLITS = ("val", "train")  # --split: the dataset root's folders


def resolve_split_dir(data, split=None):
    """(split, folder of class folders): DATA/<split> when it exists, else DATA itself, a split
    folder named directly, whose split is --split, else its own name when that is one (so that
    --data .../train is a train run), else val."""
    root = Path(data).expanduser()
    if not root.is_dir():
        raise UserError(f"the data folder {root} does not exist; pass --data or set "
                        "IMAGENET100_ROOT.")
    present = [name for name in SPLITS if (root / name).is_dir()]
    if present:
        chosen = split or SPLITS[0]
        if chosen not in present:
            raise UserError(f"{root} has no {chosen} folder (it has {', '.join(present)}); pass "
                            f"--split {present[0]}, or --data pointing to the {chosen} images.")
        return chosen, root / chosen
    return split or (root.name if root.name in SPLITS else SPLITS[0]), root


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


def read_table(path):
    with path.open(newline="") as table:
        return list(csv.DictReader(table, delimiter="\t"))


@functools.cache
def imagenet1k_table():
    """{wnid: row} of the 1,000 ImageNet-1k classes, in class-index order."""
    return {row["wnid"]: row for row in read_table(IMAGENET1K_TABLE)}


def imagenet1k_wnids():
    """The 1,000 ImageNet-1k wnids in class-index order."""
    return list(imagenet1k_table())


def read_imagenet100_table():
    return read_table(IMAGENET100_TABLE)


def describe_classes(wnids, class_names="openai"):
    """(ImageNet-1k indices, class names) of the folder's wnids; `class_names` picks the names
    (a key of CLASS_NAME_COLUMNS)."""
    table = imagenet1k_table()
    unknown = [wnid for wnid in wnids if wnid not in table]
    if unknown:
        raise UserError(f"class folder {unknown[0]!r} is not an ImageNet-1k wnid"
                        + (f" (nor are {len(unknown) - 1} others)" if len(unknown) > 1 else "")
                        + "; the data folder must hold one folder per ImageNet class.")
    column = CLASS_NAME_COLUMNS[class_names]
    return ([int(table[wnid]["imagenet1k_index"]) for wnid in wnids],
            [table[wnid][column] for wnid in wnids])


def warn_if_not_imagenet100(wnids):
    standard = {row["wnid"] for row in read_imagenet100_table()}
    missing, extra = sorted(standard - set(wnids)), sorted(set(wnids) - standard)
    if missing or extra:
        print(f"warning: the folder's {len(wnids)} classes are not the standard ImageNet100: "
              f"{len(missing)} of its classes are missing and {len(extra)} others are present; "
              "results are for the folder's classes.", file=sys.stderr)
