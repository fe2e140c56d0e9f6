"""The ImageFolder layout: one folder per class, the images anywhere below it.

The samples are in torchvision ImageFolder's order (classes sorted, then every file below a
class's folder in sorted walk order), read without torch, so a cache made before the other
layouts existed has the same keys and fingerprint.
"""
import functools
import os
from pathlib import Path

import numpy as np

from runs.outputs import UserError
from sources import classes
from sources.sample_source import SampleSource


def image_files(split_dir, class_folders):
    """(relative paths, labels) of the files ImageFolder loads, in its order."""
    paths, labels = [], []
    for label, class_folder in enumerate(class_folders):
        for root, _, names in sorted(os.walk(Path(split_dir) / class_folder, followlinks=True)):
            for name in sorted(names):
                if name.lower().endswith(classes.IMAGE_EXTENSIONS):
                    paths.append(os.path.relpath(os.path.join(root, name), split_dir))
                    labels.append(label)
    return paths, np.asarray(labels, dtype=np.int64)


class FolderSource(SampleSource):
    layout = "folder"

    def __init__(self, split_dir):
        self.split_dir = self.location = Path(split_dir)
        self.class_ids = tuple(classes.find_class_folders(split_dir))

    @functools.cached_property
    def listing(self):
        """(relative paths, labels), listed when first needed: naming a run from its class
        folders does not walk 1.28M files."""
        paths, labels = image_files(self.split_dir, self.class_ids)
        if not paths:
            raise UserError(f"the class folders of {self.split_dir} hold no image files.")
        return paths, labels

    @property
    def paths(self):
        return self.listing[0]

    @property
    def labels(self):
        return self.listing[1]

    def key(self, index):
        return self.paths[index]

    def keys(self):
        return list(self.paths)

    def read(self, index):
        return (self.split_dir / self.paths[index]).read_bytes()
