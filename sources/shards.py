"""The webdataset layout: tar shards as CLIP_benchmark (`clip_benchmark_export_wds`) and
clip-retrieval write them, `0.tar, 1.tar, ...` with classnames.txt and
zeroshot_classification_templates.txt beside their split folder.

A sample is the members sharing a key (the member's name up to the first dot of its file name):
an image (`jpg`, `png`, `webp`, ...) and its class number (`cls`). The shards are indexed once,
their headers only (each member's offset and size; the `cls` members' few bytes are read), and
the index is cached in OUT/cache, keyed by the shards' names, sizes and modification times: any
chunk then reads its images directly, and every process of a torchrun job reads the same index.

Read with the standard library's tarfile rather than the `webdataset` or `wids` packages:
webdataset streams shards in order and gives no random access, which chunks, resume and
torchrun's deterministic split need; wids gives it, but from its own JSON shard list with
sample counts that someone has to write first. tarfile reads the headers of an uncompressed tar
by seeking past every member's data, which is what indexing needs, with no new dependency.
"""
import os
import tarfile
from pathlib import Path

import numpy as np

from runs.outputs import UserError, write_atomic
from sources import classes
from sources.sample_source import SampleSource, index_fingerprint, sha256_of_file_list

INDEX_VERSION = 1
IMAGE_SUFFIXES = tuple(extension.lstrip(".") for extension in classes.IMAGE_EXTENSIONS)
LABEL_SUFFIXES = ("cls", "cls.txt", "label", "label.txt")


def split_member_name(name):
    """(sample key, suffix) of a member: webdataset's convention, the key up to the first dot of
    the file name (a folder may hold dots)."""
    folder, _, base = name.rpartition("/")
    stem, dot, suffix = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), suffix.lower() if dot else ""


def index_shard(path):
    """[(sample key, image offset, image size, image member, label)] of one shard, in its order;
    a sample without a class number is a UserError (one without an image is kept: reading it
    says so, as for an unreadable image)."""
    samples = {}
    try:
        with tarfile.open(path, "r:") as archive:
            for member in archive:
                if not member.isfile():
                    continue
                key, suffix = split_member_name(member.name)
                sample = samples.setdefault(key, {})
                if suffix in IMAGE_SUFFIXES and "image" not in sample:
                    sample["image"] = (member.offset_data, member.size, member.name)
                elif suffix in LABEL_SUFFIXES and "label" not in sample:
                    sample["label"] = archive.extractfile(member).read()
    except (tarfile.TarError, OSError) as error:
        raise UserError(f"the shard {path} is not a readable tar file ({error}); fetch it again, "
                        "or leave it out of --data.") from None
    rows = []
    for key, sample in samples.items():
        try:
            label = int(sample["label"].decode().strip())
        except (KeyError, ValueError, UnicodeDecodeError):
            raise UserError(f"the sample {key!r} of the shard {path} has no class number (a "
                            f"'{key}.cls' member holding an integer), as webdataset shards of a "
                            "classification dataset have.") from None
        offset, size, member = sample.get("image", (-1, 0, f"{key}.<no image>"))
        rows.append((key, offset, size, member, label))
    return rows


def build_index(shards):
    """The index of every shard, as arrays: shard number, image offset and size, member name
    (bytes), label."""
    columns = [[], [], [], [], []]
    for number, shard in enumerate(shards):
        for key, offset, size, member, label in index_shard(shard):
            for column, value in zip(columns, (number, offset, size, member.encode(), label)):
                column.append(value)
    shard_of, offsets, sizes, members, labels = columns
    return {"shard": np.asarray(shard_of, dtype=np.int32), "offset": np.asarray(offsets, dtype=np.int64),
            "size": np.asarray(sizes, dtype=np.int64), "member": np.asarray(members, dtype=bytes),
            "label": np.asarray(labels, dtype=np.int64)}


def load_index(shards, index_dir):
    """The shards' index: from index_dir's cache when the shards are unchanged, else built and
    cached there (atomically: processes indexing at the same time write the same bytes)."""
    if index_dir is None:
        return build_index(shards)
    identity = sha256_of_file_list(shards)
    path = Path(index_dir) / f"shard-index-v{INDEX_VERSION}-{identity[:16]}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as cached:
                return {key: cached[key] for key in cached.files}
        except (OSError, ValueError):
            pass  # damaged: built again below
    index = build_index(shards)
    write_atomic(path, lambda file: np.savez(file, **index))
    return index


class ShardSource(SampleSource):
    layout = "shards"

    def __init__(self, shards, split_dir, location, index_dir=None):
        self.shards = [Path(shard) for shard in shards]
        self.split_dir, self.location = Path(split_dir), location
        index = load_index(self.shards, index_dir)
        self.shard_of, self.offsets, self.sizes = index["shard"], index["offset"], index["size"]
        self.members, self.labels = index["member"], index["label"]
        if not len(self.labels):
            raise UserError(f"the shards of {location} hold no samples.")
        self.shard_names = [os.path.relpath(shard, self.split_dir) for shard in self.shards]

    def key(self, index):
        return f"{self.shard_names[self.shard_of[index]]}/{self.members[index].decode()}"

    def describe(self, index):
        return f"{self.shards[self.shard_of[index]]} member {self.members[index].decode()}"

    def read(self, index):
        if self.offsets[index] < 0:
            raise OSError("the sample has no image member")
        with open(self.shards[self.shard_of[index]], "rb") as shard:
            shard.seek(self.offsets[index])
            return shard.read(self.sizes[index])

    def fingerprint(self):
        return index_fingerprint(f"{key}\t{size}" for key, size in zip(self.keys(), self.sizes))
