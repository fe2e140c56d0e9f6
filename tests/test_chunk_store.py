"""The parts of a run and the cache they merge into, without torch: order, exactly-once,
damaged parts, other configurations' parts, memory-mapped and byte-stable caches."""
import dataclasses
import errno
import json
import os
import shutil
import zipfile

import numpy as np
import pytest

from runs import cache
from inference import distributed
from inference.chunk_store import ChunkStore, Part
from conftest import synthetic_predictions
from runs.outputs import DiskFull, UserError
from inference.config import InferenceConfig, default_chunk_size

NUM_IMAGES, CHUNK, CLASSES = 10, 4, 3
MANIFEST = {"model": "clip", "class_names": "openai", "weights_identity": {"sha256": "ab" * 32}}


def store_at(run_dir, fingerprint="f" * 64, manifest=MANIFEST):
    return ChunkStore(run_dir, fingerprint, NUM_IMAGES, CHUNK, manifest)


def logits_of(indices):
    return np.array([[index, -index, index / 7] for index in indices], dtype=np.float32)


def write_chunk(store, chunk, unreadable=()):
    images = [index for index in store.images(chunk) if index not in unreadable]
    store.write(chunk, Part(logits=logits_of(images), indices=np.array(images),
                            labels=np.array(images) % CLASSES,
                            unreadable={index: "truncated" for index in unreadable}))


def merge(store, run_dir):
    paths = [f"c{index % CLASSES}/{index:02d}.JPEG" for index in range(NUM_IMAGES)]
    return store.merge(run_dir / "predictions.npz", paths, np.array(["n1", "n2", "n3"]),
                       np.array(["a", "b", "c"]), {"model": "clip"})


def test_parts_written_in_any_order_merge_in_file_order_once(tmp_path):
    store = store_at(tmp_path)
    assert store.num_chunks == 3 and list(store.images(2)) == [8, 9]
    assert store.prepare() is None
    for chunk in (2, 0):
        write_chunk(store, chunk, unreadable={9})
    assert store.missing() == [1]
    write_chunk(store, 1)
    skipped = merge(store, tmp_path)
    assert skipped == {9: "truncated"}
    merged = cache.load_predictions(tmp_path / "predictions.npz")
    kept = [index for index in range(NUM_IMAGES) if index != 9]
    np.testing.assert_array_equal(merged.logits, logits_of(kept))
    assert merged.paths.tolist() == [f"c{i % CLASSES}/{i:02d}.JPEG" for i in kept]
    assert merged.meta["skipped"] == ["c0/09.JPEG"]
    assert not (tmp_path / "parts").exists()


def test_a_damaged_part_is_named_deleted_and_computed_again(tmp_path):
    store = store_at(tmp_path)
    store.prepare()
    for chunk in range(3):
        write_chunk(store, chunk)
    store.part_path(1).write_bytes(b"half a part")
    with pytest.raises(UserError, match=r"part-000001\.npz was damaged .* run the same command again"):
        merge(store, tmp_path)
    assert store.missing() == [1]


def test_other_configurations_parts_are_named_with_what_differs_and_kept(tmp_path):
    old = store_at(tmp_path, "0" * 64, {**MANIFEST, "class_names": "wordnet"})
    old.prepare()
    write_chunk(old, 0)
    (old.folder / ".part-000001.npz.x1.tmp").write_bytes(b"killed while writing")
    note = store_at(tmp_path).prepare()
    assert f"the 1 part(s) in {old.folder} were made with class_names \"wordnet\"" in note
    assert "not reused" in note and old.part_path(0).is_file()
    assert store_at(tmp_path, "0" * 64).prepare() is not None  # the tmp file of a killed run goes
    assert not list(old.folder.glob(".*.tmp"))


def test_cache_is_memory_mapped_and_the_same_content_the_same_bytes(tmp_path):
    predictions = synthetic_predictions("clip", 0)
    for name in ("a.npz", "b.npz"):
        cache.save_predictions(tmp_path / name, predictions)
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    loaded = cache.load_predictions(tmp_path / "a.npz")
    assert isinstance(loaded.logits, np.memmap) and isinstance(loaded.paths, np.memmap)
    np.testing.assert_array_equal(loaded.logits, predictions.logits)
    assert loaded.paths.tolist() == predictions.paths.tolist()
    assert zipfile.ZipFile(tmp_path / "a.npz").getinfo("logits.npy").date_time == cache.ZIP_TIMESTAMP
    # Another tool's compressed cache is read whole instead.
    np.savez_compressed(tmp_path / "c.npz", **{key: getattr(predictions, key) for key in cache.REQUIRED_KEYS})
    compressed = cache.load_predictions(tmp_path / "c.npz")
    assert not isinstance(compressed.logits, np.memmap)
    np.testing.assert_array_equal(compressed.logits, predictions.logits)


def test_row_blocks_cover_every_row_once():
    blocks = cache.row_blocks(10, 3, block_elements=7)
    assert [(block.start, block.stop) for block in blocks] == [(0, 2), (2, 4), (4, 6), (6, 8), (8, 10)]
    assert cache.row_blocks(0, 3) == []


def test_configuration_fingerprint_and_differences():
    config = InferenceConfig(model="clip", split="train", weights="/a/RN50.pt", architecture="RN50",
                             prompts="single", class_names="openai", branch=None, features=True,
                             precision="fp32", batch_size=64, chunk_size=default_chunk_size(64))
    assert config.chunk_size == default_chunk_size(64) == 8192 and default_chunk_size(100) == 8200
    assert config.meta() == {"model": "clip", "split": "train", "weights": "/a/RN50.pt",
                             "architecture": "RN50", "prompts": "single", "class_names": "openai",
                             "features": True, "precision": "fp32", "batch_size": 64}
    identity = {"path": "/a/RN50.pt", "bytes": 3, "sha256": "ab"}
    fingerprint = config.fingerprint(identity, "files", "cpu")
    # Another node's path to the same file is the same weights; other content is not.
    assert config.fingerprint({**identity, "path": "/b/RN50.pt"}, "files", "cpu") == fingerprint
    assert config.fingerprint({**identity, "sha256": "cd"}, "files", "cpu") != fingerprint
    assert config.fingerprint(identity, "other files", "cpu") != fingerprint
    assert config.fingerprint(identity, "files", "cuda") != fingerprint
    assert config.fingerprint(identity, "files", "cpu", ["a", "b"]) != fingerprint  # other class names
    assert config.differences({"prompts": "ensemble", "batch_size": 32, "architecture": "ViT-B-32"}) == [
        "--clip-model ViT-B-32, not RN50", "--prompts ensemble, not single"]


def test_place_from_torchrun_environment(monkeypatch):
    assert distributed.current_place({}) == distributed.Place()
    place = distributed.current_place({"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1",
                                       "LOCAL_WORLD_SIZE": "4"})
    assert (place.rank, place.world_size, place.local_rank, place.local_world_size) == (5, 8, 1, 4)
    monkeypatch.setattr(distributed, "usable_cpus", lambda: 64)
    assert place.cpus == 16 and not place.is_main
    monkeypatch.setattr(distributed, "usable_cpus", lambda: 2)
    assert place.cpus == 1


def checked_parts(store):
    """{chunk: bytes} of every part after a check of them all, and what was set aside."""
    damaged = store.set_aside_damaged(sorted(store.finished()))
    return {chunk: store.part_path(chunk).read_bytes() for chunk in store.finished()}, damaged


def test_truncated_changed_and_flipped_parts_are_set_aside_and_listed_missing(tmp_path):
    store = store_at(tmp_path)
    store.prepare()
    for chunk in range(3):
        write_chunk(store, chunk)
    intact = store.part_path(2).read_bytes()
    # Cut short, as by a node that died mid-write where renames are not atomic.
    whole = store.part_path(0).read_bytes()
    store.part_path(0).write_bytes(whole[:len(whole) // 2])
    # A byte flipped in the logits' data: the zip's own CRC finds it.
    with np.load(store.part_path(1)) as archive:
        arrays = {key: archive[key] for key in archive.files}
    data = bytearray(store.part_path(1).read_bytes())
    offset = data.index(arrays["logits"].tobytes())
    data[offset] ^= 0x40
    damaged_bytes = bytes(data)
    store.part_path(1).write_bytes(damaged_bytes)
    parts, damaged = checked_parts(store)
    assert [chunk for chunk, _ in damaged] == [0, 1] and parts == {2: intact}
    assert "cannot be read" in damaged[0][1] and "set aside as part-000000.npz.damaged" in damaged[0][1]
    assert (store.folder / "part-000001.npz.damaged").read_bytes() == damaged_bytes
    assert store.missing() == [0, 1]
    # Changed consistently at the zip's level (its CRCs recomputed): only the checksum sees it.
    arrays["logits"] = arrays["logits"] + 1
    np.savez(store.part_path(1), **arrays)
    _, damaged = checked_parts(store)
    assert damaged == [(1, f"the part {store.part_path(1)} is damaged (its checksum does not match "
                           "its content): set aside as part-000001.npz.damaged, and computed again.")]


def test_a_tuple_and_the_same_list_are_no_difference(tmp_path):
    """A manifest read back from JSON holds lists where the configuration holds tuples."""
    templates = ("a photo of a {c}.", "a {c}.")
    old = store_at(tmp_path, "0" * 64, {**MANIFEST, "templates": list(templates), "batch_size": 32,
                                        "chunk_size": 64})
    old.prepare()
    note = store_at(tmp_path, "f" * 64, {**MANIFEST, "templates": templates, "batch_size": 64,
                                         "chunk_size": 128}).prepare()
    assert "were made with chunk_size 64, so" in note  # the batch size decides nothing either
    assert "templates" not in note and "batch_size" not in note
    assert store_at(tmp_path, "f" * 64, {**MANIFEST, "templates": ["a {c}."]}).differences(old.folder) == [
        f'templates {json.dumps(list(templates))}']


def test_parts_of_two_batch_sizes_merge_and_the_cache_says_both(tmp_path):
    """A run resumed with another --batch-size reuses its parts (the fingerprint leaves the batch
    size out), and its cache records the batch sizes the logits were computed with."""
    config = InferenceConfig(model="clip", split="val", weights="/a/RN50.pt", architecture="RN50",
                             prompts="single", class_names="openai", branch=None, features=True,
                             precision="fp32", batch_size=64, chunk_size=default_chunk_size(64))
    smaller = dataclasses.replace(config, batch_size=32)
    assert smaller.fingerprint({}, "files", "cpu") == config.fingerprint({}, "files", "cpu")
    for chunk, batch_size in ((0, 2), (1, 4), (2, 2)):
        write_chunk(store_at(tmp_path, manifest={**MANIFEST, "batch_size": batch_size}), chunk)
    merge(store_at(tmp_path), tmp_path)
    assert cache.load_predictions(tmp_path / "predictions.npz").meta["batch_size"] == [2, 4]


def test_a_full_disk_keeps_the_finished_parts_and_leaves_no_file(tmp_path, monkeypatch):
    store = store_at(tmp_path)
    store.prepare()
    write_chunk(store, 0)
    finished = store.part_path(0).read_bytes()
    free = shutil.disk_usage(tmp_path).free
    real_savez = np.savez

    def full_disk(file, **arrays):
        file.write(b"x" * 100)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(np, "savez", full_disk)
    with pytest.raises(DiskFull) as refused:
        write_chunk(store, 1)
    monkeypatch.setattr(np, "savez", real_savez)
    error = refused.value
    assert error.folder == store.folder and abs(error.free - free) < 50e6
    assert str(error).startswith(f"no space left in {store.folder} (")
    assert sorted(path.name for path in store.folder.iterdir()) == ["manifest.json", "part-000000.npz"]
    assert store.part_path(0).read_bytes() == finished
    write_chunk(store, 1)  # with space: the space said to be needed is the part's, less its headers
    assert 0 < error.needed <= store.part_path(1).stat().st_size < error.needed + 4096
