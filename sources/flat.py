"""The flat layout: one folder of images and a labels file (--labels FILE), as image-net.org
gives ImageNet's validation set (ILSVRC2012_img_val.tar: 50,000 JPEGs in one folder).

The labels file is either
- a CSV of file name (with or without its extension) and label, a header line allowed: Kaggle's
  LOC_val_solution.csv (`ImageId,PredictionString`, whose first word is the wnid), or any
  `file,label` table; or
- one label per line for the images in sorted order: the devkit's
  ILSVRC2012_validation_ground_truth.txt, whose numbers are the devkit's ILSVRC2012_IDs, turned
  into wnids by the devkit's meta.mat beside it.
The classes are the distinct labels, sorted, and the images are in class order, then by name:
ImageFolder's order of the same images in class folders, so that a flat copy of a dataset gives
the run (the same batches, the same logits) its folder copy gives.
"""
import csv
from pathlib import Path

import numpy as np

from runs.outputs import UserError
from sources import classes
from sources.sample_source import SampleSource

DEVKIT_META = "meta.mat"  # the devkit's data/meta.mat, beside its ground-truth file


def devkit_wnids(meta_path):
    """{ILSVRC2012_ID: wnid} of the devkit's meta.mat (its leaf synsets: the 1,000 classes)."""
    from scipy.io import loadmat
    try:
        synsets = loadmat(meta_path, squeeze_me=True)["synsets"]
        return {int(synset["ILSVRC2012_ID"]): str(synset["WNID"]) for synset in synsets
                if int(synset["num_children"]) == 0}
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise UserError(f"{meta_path} is not the ImageNet devkit's meta.mat ({error}).") from None


def labels_by_line(lines, images, path):
    """{image: label} of a one-label-per-line file, line i labelling the i-th image in sorted
    order; the devkit's class numbers become wnids through its meta.mat."""
    if len(lines) != len(images):
        raise UserError(f"the labels file {path} has {len(lines)} lines but the folder holds "
                        f"{len(images)} images; it must have one label per image, in the images' "
                        "sorted order.")
    if all(line.isdigit() for line in lines):
        meta = Path(path).parent / DEVKIT_META
        if not meta.is_file():
            raise UserError(f"the labels file {path} gives class numbers: put the devkit's "
                            f"{DEVKIT_META} beside it (they are its ILSVRC2012_IDs), or pass a "
                            "CSV of file name and label (as Kaggle's LOC_val_solution.csv).")
        wnids = devkit_wnids(meta)
        unknown = [line for line in lines if int(line) not in wnids]
        if unknown:
            raise UserError(f"the class number {unknown[0]} of {path} is not in {meta}.")
        lines = [wnids[int(line)] for line in lines]
    return dict(zip(images, lines))


def labels_by_name(rows, images, path):
    """{image: label} of a CSV of file name (or name without extension) and label; the label is
    the cell's first word (LOC_val_solution.csv's PredictionString starts with the wnid)."""
    by_stem = {Path(image).stem: image for image in images}
    labels = {}
    for number, row in enumerate(rows):
        if len(row) < 2 or not row[1].split():
            raise UserError(f"line {number + 1} of the labels file {path} is not `file,label`.")
        image = row[0] if row[0] in images else by_stem.get(Path(row[0]).stem if "." in row[0] else row[0])
        if image is not None:  # else a header line, or a file the folder does not hold
            labels[image] = row[1].split()[0]
    return labels


def read_labels(path, images):
    """{image file name: label} of the --labels file."""
    lines = classes.read_lines(Path(path).expanduser(), "labels file")
    if lines and "," in lines[0]:
        labels = labels_by_name(list(csv.reader(lines)), set(images), path)
    else:
        labels = labels_by_line(lines, images, path)
    unlabelled = [image for image in images if image not in labels]
    if unlabelled:
        raise UserError(f"the labels file {path} gives no label for {unlabelled[0]}"
                        + (f" (nor for {len(unlabelled) - 1} other images)" if unlabelled[1:] else "")
                        + "; give every image of the folder its label.")
    return labels


class FlatSource(SampleSource):
    layout = "flat"

    def __init__(self, folder, labels_file):
        self.split_dir = self.location = Path(folder)
        images = sorted(entry.name for entry in self.split_dir.iterdir()
                        if entry.is_file() and entry.name.lower().endswith(classes.IMAGE_EXTENSIONS))
        if not images:
            raise UserError(f"{folder} holds no image files; with --labels, --data is the folder "
                            "of the images themselves.")
        labels = read_labels(labels_file, images)
        self.class_ids = tuple(sorted(set(labels.values())))
        column = {class_id: index for index, class_id in enumerate(self.class_ids)}
        self.images = sorted(images, key=lambda image: (column[labels[image]], image))
        self.labels = np.array([column[labels[image]] for image in self.images], dtype=np.int64)
        self.labels_file = Path(labels_file)

    def key(self, index):
        return self.images[index]

    def keys(self):
        return list(self.images)

    def read(self, index):
        return (self.split_dir / self.images[index]).read_bytes()

    def meta(self):
        return {**super().meta(), "labels": str(self.labels_file)}
