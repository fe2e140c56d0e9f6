"""One source of samples whatever the layout on disk: what inference reads its images from.

A SampleSource has a length and, for index i, its image's bytes (`read`), its label
(`labels[i]`, a column of the class list) and a stable key (`key`: what the cache's `paths`
record, and what its fingerprint is computed from). Chunks, torchrun's split, resume and the
unreadable-image handling of inference/engine.py all work on indices into it, whatever the layout:

- folder: an ImageFolder tree of class folders (sources/folder.py);
- shards: webdataset tar shards, as CLIP_benchmark and clip-retrieval write them (shards.py);
- parquet: Hugging Face's parquet image datasets (parquet.py);
- flat: one folder of images and a labels file, as image-net.org's validation set (flat.py).

sources/layouts.py's `open_source` picks the layout from --data (and --labels). stdlib and numpy
at import.
"""
import hashlib
import re
from pathlib import Path


from runs.outputs import UserError
from sources import classes

LAYOUTS = ("folder", "shards", "parquet", "flat")


class SampleSource:
    """The samples of one split. Subclasses set the fields in __init__ and define read and key."""
    layout = None  # one of LAYOUTS
    location = None  # what --data named (a folder, a shard pattern)
    split_dir = None  # the folder whose classnames.txt and templates file the dataset has
    class_ids = None  # tuple of str: the classes' ids (folder names, wnids), or None: by the names file
    class_names = None  # tuple of str: names the data itself carries (parquet metadata), else None
    labels = None  # int64 [N]: each sample's class, a column index

    def __len__(self):
        return len(self.labels)

    def read(self, index):
        """The image's encoded bytes; OSError when they cannot be read."""
        raise NotImplementedError

    def key(self, index):
        """The sample's stable key: a path relative to the split folder, or shard/file and member."""
        raise NotImplementedError

    def keys(self):
        return [self.key(index) for index in range(len(self))]

    def describe(self, index):
        """The sample as a message names it, so that the user can find the file."""
        return str(Path(self.split_dir) / self.key(index))

    def fingerprint(self):
        """SHA-256 of the index: tells whether a cache or a part saw the same samples."""
        return index_fingerprint(self.keys())

    def meta(self):
        """What the cache's meta records of the source."""
        return {"data": str(self.location), "layout": self.layout}


def index_fingerprint(keys):
    """SHA-256 of the sorted keys: a folder's is classes.file_list_identity of its relative paths,
    as caches made before the other layouts recorded it."""
    return classes.file_list_identity(keys)


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


def natural_key(path):
    """Sort key of a file name that puts 2.tar before 10.tar."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(path))]


def is_shard_pattern(data):
    return "{" in str(data) or str(data).endswith(".tar")


def sha256_of_file_list(paths):
    """SHA-256 of files' names, sizes and modification times: whether a cached index still holds."""
    digest = hashlib.sha256()
    for path in paths:
        stat = Path(path).stat()
        digest.update(f"{Path(path).resolve()}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()
