"""The cache contract: predictions.npz, what every analysis starts from and any tool may write.

The file is an uncompressed .npz (a zip of .npy members, as np.savez writes). The tool writes it
member by member, the logits chunk by chunk, with fixed zip timestamps: a run's cache never has
to be whole in memory, and the same logits give the same bytes. Reading memory-maps the stored
logits and paths instead of loading them, so a 1.28M x 1,000 cache (5 GB) is analysed block by
block (`row_blocks`) in a fraction of the memory. numpy only: reading a cache never imports torch.
"""
import json
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runs.errors import UnusableCache
from runs.outputs import plural, write_atomic
from runs.descriptors import NO_META

# The zip format's earliest date: members carry no time of writing, so equal content is equal bytes.
ZIP_TIMESTAMP = (1980, 1, 1, 0, 0, 0)
# Elements of a block of rows that analyses hold at once: 64 MB of float32 (128 MB as float64).
BLOCK_ELEMENTS = 1 << 24


def row_blocks(num_rows, num_columns, block_elements=BLOCK_ELEMENTS):
    """Consecutive slices covering rows 0..num_rows-1, each of at most `block_elements` elements
    (at least one row)."""
    step = max(1, block_elements // max(1, num_columns))
    return [slice(start, min(start + step, num_rows)) for start in range(0, num_rows, step)]


@dataclass
class Predictions:
    """A run's logits and what they are of: the contract of predictions.npz, which any tool may
    write (see the README) and every analysis starts from."""
    logits: np.ndarray  # float32 [N, K], column k = class wnids[k]
    labels: np.ndarray  # int64 [N], ground truth as a column index in 0..K-1
    paths: np.ndarray  # str [N], image paths relative to the val folder
    wnids: np.ndarray  # str [K], ImageFolder order (sorted)
    names: np.ndarray  # str [K], class names as shown in figures and tables
    meta: dict  # what produced these logits ("model" at least)
    # Optional, kept by clip runs: logits = meta["logit_scale"] x image_features @ text_features.T
    image_features: np.ndarray = None  # float32 [N, D], L2-normalised image embeddings
    text_features: np.ndarray = None  # float32 [K, D], the zero-shot classifier's class embeddings


PREDICTION_KEYS = ("logits", "labels", "paths", "wnids", "names", "meta")
REQUIRED_KEYS = PREDICTION_KEYS[:-1]  # a cache written by another tool may lack meta
FEATURE_KEYS = ("image_features", "text_features")  # optional: a cache without them still works


def write_npy_member(archive, key, dtype, shape, blocks):
    """Add `key`.npy to the zip, its data the C-order bytes of `blocks` (arrays of `dtype` whose
    rows add up to `shape`), written as they come."""
    dtype = np.dtype(dtype)
    info = zipfile.ZipInfo(f"{key}.npy", date_time=ZIP_TIMESTAMP)
    with archive.open(info, "w", force_zip64=True) as member:
        np.lib.format.write_array_header_1_0(member, {
            "descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
            "shape": tuple(int(n) for n in shape)})
        rows = 0
        for block in blocks:
            block = np.ascontiguousarray(block, dtype=dtype)
            member.write(block.data if block.size else b"")
            rows += len(block)
        if rows != (shape[0] if shape else 1):
            raise ValueError(f"{key}: {rows} rows written, {shape[0]} announced")


def write_predictions(path, logits_blocks, logits_shape, labels, paths, wnids, names, meta,
                      features=None, size=None):
    """Write predictions.npz atomically, the float32 logits [N, K] from `logits_blocks` (row
    blocks in order, each written and dropped): at no time is the whole cache in memory.
    `features`, when given, is (image feature blocks, their shape [N, D], text features [K, D]);
    `size`, the file's expected size, for the message of a full disk."""
    def write(file):
        with zipfile.ZipFile(file, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
            write_npy_member(archive, "logits", np.float32, logits_shape, logits_blocks)
            small = [("labels", np.asarray(labels, dtype=np.int64)), ("paths", paths),
                     ("wnids", wnids), ("names", names), ("meta", np.array(json.dumps(meta)))]
            if features is not None:
                image_blocks, image_shape, text_features = features
                write_npy_member(archive, "image_features", np.float32, image_shape, image_blocks)
                small.append(("text_features", np.asarray(text_features, dtype=np.float32)))
            for key, value in small:
                value = np.asarray(value)
                write_npy_member(archive, key, value.dtype, value.shape, [value])
    write_atomic(path, write, size)


def in_blocks(array):
    """An [N, ...] array as its row blocks."""
    return (array[rows] for rows in row_blocks(len(array), int(np.prod(array.shape[1:]))))


def save_predictions(path, predictions):
    features = None
    if predictions.image_features is not None:
        features = (in_blocks(predictions.image_features), predictions.image_features.shape,
                    predictions.text_features)
    write_predictions(path, in_blocks(predictions.logits), predictions.logits.shape,
                      predictions.labels, predictions.paths, predictions.wnids, predictions.names,
                      predictions.meta, features)


def memory_map_member(path, info):
    """The .npy member `info` of the zip at `path` as a read-only memory map, or None when it
    cannot be mapped (compressed, as np.savez_compressed writes; object arrays)."""
    if info.compress_type != zipfile.ZIP_STORED:
        return None
    with open(path, "rb") as file:
        file.seek(info.header_offset)
        local_header = file.read(30)
        if local_header[:4] != b"PK\x03\x04":
            return None
        name_length, extra_length = struct.unpack("<HH", local_header[26:30])
        file.seek(info.header_offset + 30 + name_length + extra_length)
        version = np.lib.format.read_magic(file)
        read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                       (2, 0): np.lib.format.read_array_header_2_0}.get(version)
        if read_header is None:
            return None
        shape, fortran_order, dtype = read_header(file)
        offset = file.tell()
    if dtype.hasobject:
        return None
    if not np.prod(shape, dtype=np.int64):
        return np.empty(shape, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape,
                     order="F" if fortran_order else "C")


MEMORY_MAPPED_KEYS = ("logits", "paths", "image_features")  # the arrays that grow with the images


# What each key of the contract holds, for the message naming a missing one.
KEY_CONTENTS = {"logits": "float [N, K], one row per image", "labels": "integer [N], true column indices",
                "paths": "str [N], image paths", "wnids": "str [K], the class of each logit column",
                "names": "str [K], the class names shown in figures"}


def contract_violation(arrays):
    """What keeps these arrays from being a run's predictions, or None when they are one."""
    logits, labels = arrays["logits"], arrays["labels"]
    if logits.ndim != 2 or not np.issubdtype(logits.dtype, np.floating):
        return f"`logits` must be a float array [N, K], not {logits.dtype} {logits.shape}"
    count, num_classes = logits.shape
    for key, length, what in (("wnids", num_classes, "column"), ("names", num_classes, "column"),
                              ("paths", count, "row")):
        if arrays[key].dtype.kind != "U" or arrays[key].ndim != 1:
            return f"`{key}` must be a 1-D array of strings, not {arrays[key].dtype} {arrays[key].shape}"
        if len(arrays[key]) != length:
            return (f"`logits` has {plural(length, what)} but `{key}` has "
                    f"{plural(len(arrays[key]), 'entry', 'entries')}; "
                    f"give one entry per {what}")
    if labels.shape != (count,) or not np.issubdtype(labels.dtype, np.integer):
        return f"`labels` must be {count} integers, one per logits row, not {labels.dtype} {labels.shape}"
    if count and not 0 <= labels.min() <= labels.max() < num_classes:
        return (f"`labels` must be column indices 0..{num_classes - 1} of the logits, but they "
                f"range from {labels.min()} to {labels.max()}")
    if not all(np.isfinite(logits[rows]).all() for rows in row_blocks(count, num_classes)):
        return "`logits` hold nan or inf"
    if ("image_features" in arrays) != ("text_features" in arrays):
        return "`image_features` and `text_features` come together or not at all"
    if "image_features" in arrays:
        image, text = arrays["image_features"], arrays["text_features"]
        if (image.ndim != 2 or text.ndim != 2 or image.shape[0] != count
                or text.shape[0] != num_classes or image.shape[1] != text.shape[1]
                or not np.issubdtype(image.dtype, np.floating) or not np.issubdtype(text.dtype, np.floating)):
            return (f"`image_features` must be floats [{count}, D] and `text_features` floats "
                    f"[{num_classes}, D], not {image.shape} and {text.shape}")
    return None


def load_predictions(path):
    """The cache of a run; a missing, damaged or malformed one stops (UnusableCache) with what
    is wrong: for a cache this tool wrote, remaking its run fixes it; for one another tool wrote
    (no meta), the problem names the key to fix.

    Without meta (a cache written by another tool), the model is the run folder's name and the
    provenance is unknown."""
    path = Path(path)
    contract = "see the README's 'Bring your own logits'"
    if not path.is_file():
        raise UnusableCache(path, f"there is no cache at {path}", rebuildable=True)
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [key for key in REQUIRED_KEYS if key not in archive.files]
            if missing and "meta" in archive.files:
                raise UnusableCache(path, f"the cache {path} lacks {', '.join(missing)}", rebuildable=True)
            if missing:  # another tool's cache: say what to add
                raise UnusableCache(path, f"the cache {path} lacks " + ", ".join(
                    f"`{key}` ({KEY_CONTENTS[key]})" for key in missing)
                    + f"; add {'it' if len(missing) == 1 else 'them'} to the np.savez call ({contract}).",
                    rebuildable=False)
            members = {info.filename.removesuffix(".npy"): info for info in archive.zip.infolist()}
            loaded = {}
            for key in PREDICTION_KEYS + FEATURE_KEYS:
                if key in archive.files:
                    mapped = memory_map_member(path, members[key]) if key in MEMORY_MAPPED_KEYS else None
                    loaded[key] = archive[key] if mapped is None else mapped
        meta = json.loads(str(loaded["meta"])) if "meta" in loaded else {
            "model": path.parent.name, "provenance": NO_META}
        if not isinstance(meta, dict) or "model" not in meta:
            raise ValueError("its meta entry names no model")
    except UnusableCache:
        raise
    except Exception as error:
        raise UnusableCache(path, f"the cache {path} is damaged ({error})", rebuildable=True) from None
    violation = contract_violation(loaded)
    if violation:
        raise UnusableCache(path, f"the cache {path} does not follow the predictions.npz contract: "
                            f"{violation} ({contract}).", rebuildable=False)
    loaded["meta"] = meta
    # Another tool's float64 logits are read into memory as float32 (the tool writes float32).
    loaded["logits"] = loaded["logits"].astype(np.float32, copy=False)
    loaded["labels"] = loaded["labels"].astype(np.int64, copy=False)
    for key in FEATURE_KEYS:
        if key in loaded:
            loaded[key] = loaded[key].astype(np.float32, copy=False)
    return Predictions(**loaded)
