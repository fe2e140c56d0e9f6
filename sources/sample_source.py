"""The interface of a source of samples (see sources/samples.py), and what its layouts share.
stdlib only."""
import hashlib
import re
from pathlib import Path

from sources import classes


class SampleSource:
    """The samples of one split. Subclasses set the fields in __init__ and define read and key."""
    layout = None  # "folder", "shards", "parquet" or "flat"
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


def natural_key(path):
    """Sort key of a file name that puts 2.tar before 10.tar."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(path))]


def sha256_of_file_list(paths):
    """SHA-256 of files' names, sizes and modification times: whether a cached index still holds."""
    digest = hashlib.sha256()
    for path in paths:
        stat = Path(path).stat()
        digest.update(f"{Path(path).resolve()}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()
