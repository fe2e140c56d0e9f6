"""The parquet layout: image datasets as Hugging Face writes them, `data/train-00000-of-00294.parquet`,
..., each row an image struct (`bytes`, `path`) and an integer label.

Read with pyarrow, one row group at a time (the hub and the `datasets` package are not needed).
The class names are those of the dataset's own metadata (the schema's "huggingface" entry: the
label's ClassLabel names) when it has them, else classnames.txt; ImageNet-1k's 1,000 labels are
its wnids, so that its classes are named and prompted as an ImageNet folder's are.
"""
import json
import re
from pathlib import Path

import numpy as np

from runs.outputs import UserError
from sources import classes
from sources.sample_source import SampleSource, natural_key

# Hugging Face's file names: <split>-<number>-of-<count>.parquet, in the root or its data/ folder.
HUB_FILE = re.compile(r"(?P<split>[\w]+?)-\d+-of-\d+\.parquet")
HUB_SPLITS = {"val": ("validation", "valid", "val"), "train": ("train",), "test": ("test",)}
IMAGE_COLUMNS = ("image", "img", "jpg", "png")
LABEL_COLUMNS = ("label", "labels", "cls")
# ImageNet-1k's labels are recognised by their ClassLabel names, its classes' WordNet lemmas; a
# few of them are spelt otherwise in some copies, hence not all.
IMAGENET_MATCHING = 0.95


def hugging_face_files(root, split=None):
    """(split, its parquet files) when `root` (or its data/ folder) holds files named as Hugging
    Face names them, else None. Without --split, val (`validation-*`), else the only split."""
    if not root.is_dir():
        return None
    by_split = {}
    for folder in (root, root / "data"):
        for path in sorted(folder.glob("*.parquet"), key=natural_key) if folder.is_dir() else ():
            match = HUB_FILE.fullmatch(path.name)
            if match:
                by_split.setdefault(match["split"], []).append(path)
    if not by_split:
        return None
    present = {ours: hub for ours, names in HUB_SPLITS.items() for hub in names if hub in by_split}
    chosen = split or ("val" if "val" in present else next(iter(present), None))
    if chosen not in present:
        raise UserError(f"{root} holds the parquet files of the split(s) {', '.join(sorted(by_split))}, "
                        f"not of {chosen or 'val, train or test'}; pass --split with one of "
                        f"{', '.join(sorted(present)) or 'val, train, test'}.")
    return chosen, by_split[present[chosen]]


def hub_features(schema):
    """The "features" of the schema's Hugging Face metadata, {} without it."""
    metadata = (schema.metadata or {}).get(b"huggingface")
    try:
        return json.loads(metadata)["info"]["features"] if metadata else {}
    except (ValueError, KeyError, TypeError):
        return {}


def pick_column(schema, features, feature_type, usual_names, what, path):
    """The column the metadata types as `feature_type`, else the first of its usual names."""
    typed = [name for name, feature in features.items()
             if isinstance(feature, dict) and feature.get("_type") == feature_type]
    named = [name for name in usual_names if name in schema.names]
    if not (typed or named):
        raise UserError(f"the parquet file {path} has no {what} column (its columns: "
                        f"{', '.join(schema.names)}); an image dataset's has {usual_names[0]!r}.")
    return (typed or named)[0]


class ParquetSource(SampleSource):
    layout = "parquet"

    def __init__(self, files, split_dir, location):
        import pyarrow.parquet as pq
        self.files, self.split_dir, self.location = [Path(f) for f in files], Path(split_dir), location
        first = pq.ParquetFile(self.files[0])
        features = hub_features(first.schema_arrow)
        self.image_column = pick_column(first.schema_arrow, features, "Image", IMAGE_COLUMNS, "image", self.files[0])
        label_column = pick_column(first.schema_arrow, features, "ClassLabel", LABEL_COLUMNS, "label",
                                   self.files[0])
        labels, self.groups, self.file_starts = [], [], []  # groups: (file, row group, first sample)
        count = 0
        for number, path in enumerate(self.files):
            parquet = pq.ParquetFile(path)
            self.file_starts.append(count)
            for group in range(parquet.num_row_groups):
                self.groups.append((number, group, count))
                labels.append(parquet.read_row_group(group, columns=[label_column])
                              .column(0).to_numpy(zero_copy_only=False))
                count += len(labels[-1])
        self.labels = np.concatenate(labels).astype(np.int64)
        self.group_starts = np.array([start for _, _, start in self.groups], dtype=np.int64)
        if (self.labels < 0).any():
            raise UserError(f"{location} has samples without a label ({label_column} -1), as a "
                            "hub dataset's test split has; evaluate its validation split (--split val).")
        self.class_ids, self.class_names = classes_of(features.get(label_column, {}).get("names"))
        self.loaded = (None, None)  # (row group number, its image bytes): the one being read

    def locate(self, index):
        """(row group number, row in it) of a sample."""
        group = int(np.searchsorted(self.group_starts, index, side="right")) - 1
        return group, index - int(self.group_starts[group])

    def key(self, index):
        """The file's name and the row's number in the file."""
        number = self.groups[self.locate(index)[0]][0]
        return f"{self.files[number].name}/{index - self.file_starts[number]}"

    def describe(self, index):
        group, row = self.locate(index)
        return f"{self.files[self.groups[group][0]]} row group {self.groups[group][1]} row {row}"

    def read(self, index):
        """The image bytes, from the row group read last when it holds them (a DataLoader worker
        reads consecutive samples), else from the row group read now."""
        import pyarrow.parquet as pq
        group, row = self.locate(index)
        if self.loaded[0] != group:
            number, in_file, _ = self.groups[group]
            column = pq.ParquetFile(self.files[number]).read_row_group(
                in_file, columns=[self.image_column]).column(0).combine_chunks()
            images = column.field("bytes") if hasattr(column, "field") else column
            self.loaded = (group, images)
        image = self.loaded[1][row].as_py()
        if image is None:
            raise OSError("the row holds no image bytes")
        return image


def classes_of(hub_names):
    """(class ids, class names) of the labels: ImageNet-1k's wnids (named by the ImageNet
    tables) when the metadata names its 1,000 classes, else no ids and the metadata's names (or
    none: then classnames.txt names them)."""
    if hub_names and len(hub_names) == 1000:
        table = classes.imagenet1k_table()
        matching = sum(name == row["wordnet_lemmas"] for name, row in zip(hub_names, table.values()))
        if matching >= IMAGENET_MATCHING * 1000:
            return tuple(table), None
    return None, tuple(hub_names) if hub_names else None
