"""A model run's logits as parts: one file per fixed chunk of the sorted image list, merged into
predictions.npz once every chunk has its part.

The chunks depend on the file list and --chunk-size only, never on how many processes compute
them, so a run may be resumed with any number of processes: each part is written atomically the
moment its chunk is done, a crash loses at most the chunks in progress, and the same command
computes only the missing ones. Parts live in RUN/parts/<fingerprint>/, the fingerprint being
that of everything the logits depend on (run_config.InferenceConfig.fingerprint): parts of
other weights, options or image files are never mixed in. Each part records the SHA-256 of
its arrays: one that was cut short or changed on disk (a node that died mid-write on a file
system without atomic renames, a disk that filled) is found before the merge, set aside and
computed again, never merged. numpy only.
"""
import hashlib
import json
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runs.cache import write_predictions
from runs.outputs import UserError, read_json, write_atomic, write_json

PARTS_FOLDER = "parts"
MANIFEST = "manifest.json"  # what the parts of a folder were made with
SET_ASIDE = ".damaged"  # the suffix a part that failed its check is renamed with
# Settings a manifest records that do not decide whether its parts are reused: the weights'
# path (their content does), the titles' words, and the batch size (a chunk is whole batches of
# either size; it changes at most the last bits of the logits).
NOT_DECIDING = ("weights", "title_note", "batch_size")


def normalised(value):
    """A setting as JSON gives it back: a tuple and the same list are the same setting."""
    return json.loads(json.dumps(value))


def checksum(arrays):
    """SHA-256 of a part's arrays: names, types, shapes and bytes, in name order."""
    digest = hashlib.sha256()
    for key in sorted(arrays):
        array = np.ascontiguousarray(arrays[key])
        digest.update(f"{key} {array.dtype.str} {array.shape}\n".encode())
        digest.update(array.data if array.size else b"")
    return digest.hexdigest()


class DamagedPart(ValueError):
    """A part that fails its check: `reason` says how."""


def describe_setting(key, value):
    """A manifest's setting as a note says it: 'class_names wordnet', 'other weights (...)'."""
    if key == "weights_identity":
        identity = value or {}
        named = (f"SHA-256 {identity['sha256'][:12]}" if "sha256" in identity
                 else identity.get("tag", "unknown"))
        return f"other weights ({named})"
    if key == "file_list_sha256":
        return "another list of image files"
    return f"{key} {json.dumps(value)}"


@dataclass
class Part:
    """One chunk's results: the logits of its readable images and which images they are."""
    logits: np.ndarray  # float32 [n, K]
    indices: np.ndarray  # int64 [n]: the images' indices in the sorted file list
    labels: np.ndarray  # int64 [n]
    unreadable: dict  # {index in the file list: why it cannot be read}
    image_features: np.ndarray = None  # float32 [n, D], when the run keeps them


class ChunkStore:
    """The parts of one run configuration, in RUN/parts/<fingerprint[:16]>/."""

    def __init__(self, run_dir, fingerprint, num_images, chunk_size, manifest):
        self.parts_dir = Path(run_dir) / PARTS_FOLDER
        self.folder = self.parts_dir / fingerprint[:16]
        self.fingerprint = fingerprint
        self.num_images = num_images
        self.chunk_size = chunk_size
        self.manifest = manifest

    @property
    def num_chunks(self):
        return -(-self.num_images // self.chunk_size)

    def images(self, chunk):
        """The file-list indices of a chunk's images."""
        return range(chunk * self.chunk_size, min((chunk + 1) * self.chunk_size, self.num_images))

    def part_path(self, chunk):
        return self.folder / f"part-{chunk:06d}.npz"

    def finished(self):
        """The chunks whose part exists."""
        if not self.folder.is_dir():
            return set()
        names = {path.name for path in self.folder.glob("part-*.npz")}
        return {chunk for chunk in range(self.num_chunks) if self.part_path(chunk).name in names}

    def missing(self):
        """The chunks without a part, in order."""
        finished = self.finished()
        return [chunk for chunk in range(self.num_chunks) if chunk not in finished]

    def prepare(self):
        """Create the folder with its manifest; return a sentence about other configurations'
        parts in RUN/parts (not reused, kept), or None when there are none."""
        if not (self.folder / MANIFEST).is_file():
            write_json(self.folder / MANIFEST, {"fingerprint": self.fingerprint, **self.manifest})
        for unfinished in self.folder.glob(".part-*.tmp"):  # a killed process's part in writing
            unfinished.unlink()
        others = [folder for folder in sorted(self.parts_dir.iterdir())
                  if folder.is_dir() and folder != self.folder]
        if not others:
            return None
        differences = sorted({text for folder in others for text in self.differences(folder)})
        count = sum(len(list(folder.glob("part-*.npz"))) for folder in others)
        return (f"the {count} part(s) in {', '.join(str(folder) for folder in others)} were made "
                f"with {'; '.join(differences) or 'another configuration'}, so they are not "
                "reused; delete them to free their space.")

    def differences(self, folder):
        """What differs between this configuration and another parts folder's manifest."""
        try:
            theirs = read_json(folder / MANIFEST, "the parts manifest")
        except UserError:
            return ["an unknown configuration"]
        return [describe_setting(key, theirs.get(key)) for key, value in self.manifest.items()
                if key not in NOT_DECIDING and normalised(theirs.get(key)) != normalised(value)]

    def write(self, chunk, part):
        unreadable = sorted(part.unreadable.items())
        arrays = {
            "logits": np.asarray(part.logits, dtype=np.float32),
            "indices": np.asarray(part.indices, dtype=np.int64),
            "labels": np.asarray(part.labels, dtype=np.int64),
            "unreadable_indices": np.array([index for index, _ in unreadable], dtype=np.int64),
            "unreadable_reasons": np.array([reason for _, reason in unreadable], dtype=str),
            "fingerprint": np.array(self.fingerprint),
            "batch_size": np.array(self.manifest.get("batch_size", 0), dtype=np.int64),
            **({} if part.image_features is None else
               {"image_features": np.asarray(part.image_features, dtype=np.float32)})}
        write_atomic(self.part_path(chunk), lambda f: np.savez(f, checksum=np.array(checksum(arrays)),
                                                               **arrays),
                     size=sum(array.nbytes for array in arrays.values()))

    def check(self, chunk):
        """Raise DamagedPart unless the chunk's part reads whole, matches its checksum and holds
        this configuration's images of this chunk (every array is read)."""
        path = self.part_path(chunk)
        try:
            with np.load(path, allow_pickle=False) as archive:
                arrays = {key: archive[key] for key in archive.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
            raise DamagedPart(f"it cannot be read: {error}") from None
        if "checksum" not in arrays or str(arrays.pop("checksum")) != checksum(arrays):
            raise DamagedPart("its checksum does not match its content")
        if str(arrays.get("fingerprint")) != self.fingerprint:
            raise DamagedPart("it belongs to another configuration")
        if not set(arrays["indices"].tolist()) <= set(self.images(chunk)):
            raise DamagedPart("it holds images of another chunk")

    def set_aside_damaged(self, chunks):
        """Check the parts of `chunks`; rename each damaged one PART.damaged (out of the merge's
        way, for a look; the merge deletes it with the folder). Returns [(chunk, the sentence
        that says so)]."""
        damaged = []
        for chunk in chunks:
            try:
                self.check(chunk)
            except DamagedPart as error:
                path = self.part_path(chunk)
                path.replace(path.with_name(path.name + SET_ASIDE))
                damaged.append((chunk, f"the part {path} is damaged ({error}): set aside as "
                                       f"{path.name + SET_ASIDE}, and computed again."))
        return damaged

    def read(self, chunk, keys):
        """{key: array} of a part; a part damaged since it was checked is deleted and named, so
        that the same command computes it again."""
        path = self.part_path(chunk)
        try:
            with np.load(path, allow_pickle=False) as archive:
                if str(archive["fingerprint"]) != self.fingerprint:
                    raise ValueError("it belongs to another configuration")
                arrays = {key: archive[key] for key in keys}
            if "indices" in arrays and not set(arrays["indices"].tolist()) <= set(self.images(chunk)):
                raise ValueError("it holds images of another chunk")
            return arrays
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
            path.unlink(missing_ok=True)
            raise UserError(f"the part {path} was damaged ({error}) and is deleted; run the same "
                            "command again to compute it anew.") from None

    def blocks(self, key):
        """One array of every part, in chunk order, each read when it is needed."""
        return (self.read(chunk, (key,))[key] for chunk in range(self.num_chunks))

    def merge(self, cache_path, relative_paths, wnids, names, meta, text_features=None):
        """Assemble predictions.npz from every part, in file-list order (the logits, and the
        image features when text_features [K, D] are given, streamed part by part), record the
        unreadable images under meta's "skipped", then delete the parts. Returns the skipped
        {index: reason}."""
        labels, kept, skipped, batch_sizes = [], [], {}, set()
        for chunk in range(self.num_chunks):
            part = self.read(chunk, ("indices", "labels", "unreadable_indices", "unreadable_reasons",
                                     "batch_size"))
            kept.append(part["indices"])
            labels.append(part["labels"])
            skipped.update(zip(part["unreadable_indices"].tolist(), part["unreadable_reasons"].tolist()))
            batch_sizes.add(int(part["batch_size"]))
        kept = np.concatenate(kept)
        if np.any(np.diff(kept) <= 0) or len(kept) + len(skipped) != self.num_images:
            raise UserError(f"the parts in {self.folder} do not cover every image exactly once; "
                            "delete the folder and run the same command again.")
        if not len(kept):
            raise UserError("none of the images could be read.")
        features = None
        if text_features is not None:
            features = (self.blocks("image_features"), (len(kept), text_features.shape[1]),
                        text_features)
        sizes = sorted(batch_sizes - {0})  # the batch sizes the parts were computed with
        if sizes:  # several where a run was resumed with another --batch-size
            meta = {**meta, "batch_size": sizes[0] if len(sizes) == 1 else sizes}
        write_predictions(
            cache_path, self.blocks("logits"), (len(kept), len(wnids)), np.concatenate(labels),
            np.asarray(relative_paths)[kept], wnids, names,
            {**meta, "skipped": [relative_paths[index] for index in sorted(skipped)]}, features,
            size=sum(self.part_path(chunk).stat().st_size for chunk in range(self.num_chunks)))
        shutil.rmtree(self.folder)
        if not any(self.parts_dir.iterdir()):
            self.parts_dir.rmdir()
        return skipped
