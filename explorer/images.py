"""The images behind a run's pseudo-labels: where its cache says they are, which of them may be
read, and the small JPEG thumbnails the page embeds.

A cache is data anyone may have written, so a path is read only when it resolves (symlinks
followed) to a file inside the image folder that the cache's meta records: `..`, an absolute path
or a symlink out of the folder is never opened.
"""
import base64
import io
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from runs.descriptors import is_simulated, source_meta

THUMBNAIL_PIXELS = 96  # longest side
THUMBNAIL_QUALITY = 70
OUTSIDE = "outside the image folder: not read"
MISSING = "not in the image folder"


def image_folder(meta):
    """The folder a run's cache paths are relative to: its own meta's, or for a run derived from
    clip's cached logits (clip-la, clip-pm), clip's."""
    return meta.get("data") or source_meta(meta).get("data")


def unavailable_reason(meta, thumbnails):
    """Why a run's images cannot be shown, or None when its image folder can be read."""
    if thumbnails == 0:
        return "no images were embedded (--thumbnails 0)."
    if is_simulated(meta):
        return "this run is SIMULATED: its logits come from no images."
    folder = image_folder(meta)
    if not folder:
        return "the run's cache records no image folder."
    if not os.access(folder, os.R_OK | os.X_OK) or not Path(folder).is_dir():
        return f"the image folder {folder} that the run's cache records is not readable on this machine."
    return None


def contained_file(root, relative):
    """(file, None) for the file `relative` names inside the resolved folder `root`, or
    (None, why it is not read)."""
    if Path(relative).is_absolute():
        return None, OUTSIDE
    try:
        candidate = (root / relative).resolve()
    except (OSError, ValueError, RuntimeError):  # a NUL byte, a symlink loop
        return None, MISSING
    if not candidate.is_relative_to(root):
        return None, OUTSIDE
    return (candidate, None) if candidate.is_file() else (None, MISSING)


def thumbnail(file):
    """A base64 JPEG of at most THUMBNAIL_PIXELS a side, or (None, why) for a file PIL cannot read."""
    from PIL import Image
    try:
        with Image.open(file) as image:
            image.draft("RGB", (THUMBNAIL_PIXELS, THUMBNAIL_PIXELS))  # JPEGs decode at 1/2..1/8 size
            small = image.convert("RGB")
            small.thumbnail((THUMBNAIL_PIXELS, THUMBNAIL_PIXELS))
            encoded = io.BytesIO()
            small.save(encoded, format="JPEG", quality=THUMBNAIL_QUALITY)
    except Exception as error:  # PIL raises many kinds for a damaged or foreign file
        return None, f"unreadable ({type(error).__name__})"
    return base64.b64encode(encoded.getvalue()).decode("ascii"), None


def read_thumbnail(root, relative):
    """(base64 JPEG or None, note or None) for one cache path relative to `root`."""
    file, why = contained_file(root, relative)
    return (None, why) if file is None else thumbnail(file)


def read_thumbnails(requests):
    """[(base64 or None, note or None)] for [(resolved folder, relative path)], decoded in threads
    (PIL releases the GIL while it decodes)."""
    with ThreadPoolExecutor(max(1, min(8, os.cpu_count() or 1))) as pool:
        return list(pool.map(lambda request: read_thumbnail(*request), requests))
