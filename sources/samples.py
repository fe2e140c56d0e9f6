"""One source of samples whatever the layout on disk: what inference reads its images from.

A SampleSource has a length and, for index i, its image's bytes (`read`), its label
(`labels[i]`, a column of the class list) and a stable key (`key`: what the cache's `paths`
record, and what its fingerprint is computed from). Chunks, torchrun's split, resume and the
unreadable-image handling of inference/engine.py all work on indices into it, whatever the layout:

- folder: an ImageFolder tree of class folders (sources/folder.py);
- shards: webdataset tar shards, as CLIP_benchmark and clip-retrieval write them (shards.py);
- parquet: Hugging Face's parquet image datasets (parquet.py);
- flat: one folder of images and a labels file, as image-net.org's validation set (flat.py).

`open_source` picks the layout from --data (and --labels); the interface is
sample_source.SampleSource. stdlib and numpy at import (pyarrow when parquet files are read).
"""
import re
from pathlib import Path

from runs.outputs import UserError
from sources import classes
from sources.flat import FlatSource
from sources.folder import FolderSource
from sources.parquet import ParquetSource, hugging_face_files
from sources.sample_source import natural_key
from sources.shards import ShardSource

def check_labels(labels, num_classes, where):
    """Stop when a label names no class of the class list."""
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        bad = int(labels.min() if labels.min() < 0 else labels.max())
        raise UserError(f"{where} has the label {bad}, but the class list has {num_classes} "
                        f"classes (0 to {num_classes - 1}); give the class names of all its "
                        f"labels in {classes.CLASS_NAMES_FILE} or --class-names-file.")


# Brace patterns as webdataset writes them: {000000..000099} (zero-padded ranges) and {a,b}.
BRACE = re.compile(r"\{([^{}]*)\}")


def expand_braces(pattern):
    """Every name a brace pattern stands for, in order."""
    match = BRACE.search(pattern)
    if not match:
        return [pattern]
    body, head, tail = match.group(1), pattern[:match.start()], pattern[match.end():]
    bounds = re.fullmatch(r"(\d+)\.\.(\d+)", body)
    if bounds:
        first, last = bounds.groups()
        width = len(first) if first.startswith("0") else 0
        choices = [f"{number:0{width}d}" for number in range(int(first), int(last) + 1)]
    else:
        choices = body.split(",")
    return [name for choice in choices for name in expand_braces(head + choice + tail)]


def is_shard_pattern(data):
    return "{" in str(data) or str(data).endswith(".tar")


def open_source(data, split=None, labels_file=None, index_dir=None):
    """(split, SampleSource) of --data: a flat folder with --labels FILE, webdataset shards (a
    folder of .tar files or a brace pattern), parquet files (a folder of .parquet files, or a
    Hugging Face dataset's root holding data/), else an ImageFolder tree. `index_dir` is where
    the shards' index is cached (the run's OUT/cache)."""
    if labels_file is not None:
        split, split_dir = classes.resolve_split_dir(data, split)
        return split, FlatSource(split_dir, labels_file)
    if is_shard_pattern(data):
        shards = [Path(name).expanduser() for name in expand_braces(str(data))]
        missing = [shard for shard in shards if not shard.is_file()]
        if missing:
            raise UserError(f"the shard {missing[0]} of --data {data} does not exist"
                            + (f" (nor do {len(missing) - 1} others)" if len(missing) > 1 else "")
                            + "; check the pattern.")
        folder = shards[0].parent
        split = split or (folder.name if folder.name in classes.SPLITS else classes.SPLITS[0])
        return split, ShardSource(shards, folder, str(data), index_dir)
    root = Path(data).expanduser()
    parquet = hugging_face_files(root, split)
    if parquet:
        chosen, files = parquet
        return chosen, ParquetSource(files, root, str(data))
    split, split_dir = classes.resolve_split_dir(data, split)
    shards = sorted(split_dir.glob("*.tar"), key=natural_key)
    if shards:
        return split, ShardSource(shards, split_dir, str(split_dir), index_dir)
    files = sorted(split_dir.glob("*.parquet"), key=natural_key)
    if files:
        return split, ParquetSource(files, split_dir, str(split_dir))
    return split, FolderSource(split_dir)


def describe_source(source, class_names="openai", class_names_file=None, templates_file=None,
                    prompts="ensemble"):
    """The source's classes.DatasetClasses: its class ids (folder names, wnids) when it has
    them; else the names of the class-names file (shards: CLIP_benchmark's classnames.txt), a
    name standing for its class; then a label without a name stops the run."""
    ids = source.class_ids
    if ids is None:  # labels are numbers: each must have a name
        names = classes.names_for_unnamed_classes(source.split_dir, class_names_file, source.class_names)
        ids = class_ids_of_names(names)
        check_labels(source.labels, len(ids), source.location)
    return classes.dataset_classes(source.split_dir, class_names, class_names_file, templates_file,
                                   prompts, folders=ids, given_names=source.class_names)


def class_ids_of_names(names):
    """Class ids from class names, for a layout whose labels are numbers: the names themselves,
    a repeated one (CLIP_benchmark's lists have some) suffixed with its class number."""
    seen = set()
    ids = []
    for index, name in enumerate(names):
        ids.append(name if name not in seen and name else f"{name}#{index}")
        seen.add(name)
    return tuple(ids)
