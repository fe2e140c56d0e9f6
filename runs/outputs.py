"""Writing and reading the output files: every file is written to a temporary file and renamed,
so none is ever half-written; a failure the user can fix is a UserError. stdlib only (numpy
arrives through the callers' write functions).
"""
import errno
import json
import math
import os
import shutil
import tempfile
from pathlib import Path


class UserError(Exception):
    """A mistake the user can fix (path, file, option): reported as one sentence, no traceback."""


class DiskFull(UserError):
    """A file could not be written for want of space (a full disk, or quota) in `folder`: about
    `needed` bytes, of which `free` were left."""

    def __init__(self, folder, needed, free):
        self.folder, self.needed, self.free = folder, needed, free
        needs = f", at least {describe_size(needed)} needed" if needed else ""
        super().__init__(f"no space left in {folder} ({describe_size(free)} free{needs}): free "
                         "some, and run the same command again; what was finished before is kept.")


FULL = {errno.ENOSPC, errno.EDQUOT}
FIGURE_DPI = 200


def describe_size(size):
    """'512 bytes', '3.1 MB', '5.0 GB' (decimal units)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return plural(int(size), "byte")


def plural(count, word, plural_form=None):
    """'1 class', '3 classes': a count with its noun in the number it takes ('es' after s, sh,
    ch and x unless plural_form says otherwise)."""
    if count == 1:
        return f"{count:,} {word}"
    return f"{count:,} {plural_form or word + ('es' if word.endswith(('s', 'sh', 'ch', 'x')) else 's')}"


def write_atomic(path, write, size=None):
    """Call write(binary_file) on a temporary file next to `path`, then rename it over `path`.
    A failing write (no permission, a folder in the way) is a UserError; a full disk is
    DiskFull, saying the space needed: `size`, the file's expected size, when given, else what
    was written before the disk was full. Nothing is left of the file either way."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.",
                                             suffix=".tmp", delete=False)
    except OSError as error:
        raise write_error(path, error) from None
    written = 0
    try:
        with handle:
            write(handle)
            written = handle.tell()
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(handle.name, 0o666 & ~umask)  # NamedTemporaryFile creates 0600
        os.replace(handle.name, path)
    except BaseException as error:
        written = written or os.stat(handle.name).st_size
        os.unlink(handle.name)
        if isinstance(error, OSError) and error.errno in FULL:
            raise DiskFull(path.parent, size or written, shutil.disk_usage(path.parent).free) from None
        if isinstance(error, OSError):
            raise write_error(path, error) from None
        raise


def write_error(path, error):
    if error.errno in FULL:
        return DiskFull(path.parent, 0, shutil.disk_usage(path.parent).free)
    return UserError(f"cannot write {path} ({error.strerror or error}).")


def none_if_nan(value):
    """A number for JSON: null where it is undefined (NaN), never NaN, which JSON lacks."""
    return None if math.isnan(value) else float(value)


def write_json(path, data):
    write_atomic(path, lambda f: f.write((json.dumps(data, indent=2) + "\n").encode()))


def write_figure(path, figure):
    # zlib level 3 instead of PIL's 6: ~0.1 s less per multi-megapixel figure, ~20% larger files.
    write_atomic(path, lambda f: figure.savefig(f, format="png", dpi=FIGURE_DPI,
                                                pil_kwargs={"compress_level": 3}))


def read_json(path, what):
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"{what} {path} does not exist.") from None
    except (OSError, ValueError) as error:
        raise UserError(f"{what} {path} cannot be read ({error}).") from None
