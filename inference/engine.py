"""Inference: a model over a source of samples (sources/samples.py: a folder, shards, parquet
files, a flat folder with labels), chunk by chunk, into the run's cache.

`predict` indexes the source, builds the model, computes the chunks that have no part yet (under
torchrun, this process's share of them: see chunk_store.py and distributed.py) and, in the main
process, merges the parts into predictions.npz once every chunk has one. Every image carries
its index in the source from the loader to its part, so each is counted exactly once.
"""
import functools
import io
import os
import sys
import threading
import time
from dataclasses import dataclass

import numpy as np

from sources import classes
from inference import distributed
from inference import models
from runs.cache import load_predictions
from inference.chunk_store import ChunkStore, Part
from runs.outputs import UserError, plural

WAIT_SECONDS = 1.0  # how often the main process looks for the other processes' parts
# Once its own chunks are done, the main process waits for the others' as long as parts keep
# appearing: it gives up when none has appeared for WAIT_FACTOR x the slowest chunk it computed
# itself (the others have at most as many chunks as it had, so they are at most about one chunk
# behind), and never sooner than MIN_WAIT_SECONDS; --chunk-wait sets the time instead.
WAIT_FACTOR = 3
MIN_WAIT_SECONDS = 60.0


class ChunksMissing(UserError):
    """The other processes' parts stopped appearing: {rank: [chunk, ...]} of those missing, after
    `waited` seconds without a new part."""

    def __init__(self, missing_by_rank, waited):
        self.missing_by_rank, self.waited = missing_by_rank, waited
        named = "; ".join(f"{plural(len(chunks), 'chunk')} of process {rank} "
                          f"({', '.join(map(str, chunks))})" for rank, chunks in sorted(missing_by_rank.items()))
        super().__init__(f"no part has appeared for {waited:.0f} s, and {named} are missing (that "
                         "process ended or hangs): run the same command again to compute them, "
                         "or pass a longer --chunk-wait.")


@dataclass
class Unreadable:
    """Stands in for an image file that cannot be decoded; `reason` says why."""
    reason: str


def load_rgb(source, index):
    """Sample `index` of the source as an RGB image, whatever its encoding (grayscale, CMYK, a
    PNG named .JPEG), or Unreadable (missing, truncated, corrupt).

    Module-level, like the classes below, so DataLoader workers can receive it under any start
    method."""
    from PIL import Image
    try:
        with Image.open(io.BytesIO(source.read(index))) as image:
            return image.convert("RGB")
    except Exception as error:  # PIL raises OSError, SyntaxError, ValueError... on bad files
        return Unreadable(str(error) or type(error).__name__)


class IndexedImages:
    """A SampleSource's samples as (transformed image or Unreadable, label, index)."""

    def __init__(self, source, transform):
        self.source = source
        self.transform = transform

    def __len__(self):
        return len(self.source)

    def __getitem__(self, index):
        image = load_rgb(self.source, index)
        label = int(self.source.labels[index])
        return (image if isinstance(image, Unreadable) else self.transform(image)), label, index


def collate_indexed(batch):
    """(images, labels, indices) of the readable samples, and [(index, reason)] of the rest."""
    from torch.utils.data import default_collate
    readable = [sample for sample in batch if not isinstance(sample[0], Unreadable)]
    unreadable = [(index, image.reason) for image, _, index in batch if isinstance(image, Unreadable)]
    images, labels, indices = default_collate(readable) if readable else (None, None, None)
    return images, labels, indices, unreadable


def loading_worker_follows_parent(parent_pid, spawned_by_main_thread, worker_id):
    """A DataLoader worker's start: it ends with its process at once, however that ends (its
    own watch on the parent takes up to 5 s), and leaves Ctrl-C and SIGTERM to it."""
    distributed.helper_follows_parent(parent_pid, spawned_by_main_thread)


def compute_chunks(model, dataset, device, precision, batch_size, workers, skip_bad_images, store,
                   chunks, progress=None):
    """Compute `chunks` (in order) and write each one's part the moment it is done. Without
    skip_bad_images a batch holding unreadable files stops the run (a UserError naming them);
    the chunks already written stay. `precision` as set by models.set_precision."""
    import torch
    if not chunks:
        return
    on_cuda = device.type == "cuda"
    torch.backends.cudnn.benchmark = on_cuda  # every batch is 224 x 224: tune convolutions once
    # Chunks are whole batches (chunk_size is a multiple of batch_size, and only the list's last
    # chunk is shorter), so a chunk's batches are the same whichever process computes it.
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, sampler=[i for chunk in chunks for i in store.images(chunk)],
        num_workers=workers, pin_memory=on_cuda, collate_fn=collate_indexed,
        worker_init_fn=functools.partial(loading_worker_follows_parent, os.getpid(),
                                         threading.current_thread() is threading.main_thread()))
    model = model.to(device, memory_format=torch.channels_last).eval()
    pending = iter(chunks)
    chunk = next(pending, None)
    logits, features, labels, indices, unreadable, seen = [], [], [], [], {}, 0
    with torch.inference_mode():
        for images, batch_labels, batch_indices, bad in loader:
            unreadable.update(bad)
            if bad and not skip_bad_images:
                named = "; ".join(f"{dataset.source.describe(i)} ({reason})" for i, reason in bad)
                raise UserError(f"cannot read {named}: fix or remove the file(s), or pass "
                                "--skip-bad-images to evaluate the other images.")
            if images is not None:
                images = images.to(device, non_blocking=True, memory_format=torch.channels_last)
                with models.autocast(device, precision):
                    outputs = model(images)
                # Kept on the device until the chunk ends: a .cpu() per batch would make the
                # loop wait for each forward.
                if isinstance(outputs, tuple):  # (logits, image features)
                    outputs, batch_features = outputs
                    features.append(batch_features.float())
                logits.append(outputs.float())
                labels.append(batch_labels)
                indices.append(batch_indices)
            batch_images = len(bad) + (0 if images is None else len(images))
            seen += batch_images
            if progress:
                progress.advance(batch_images)
            if seen == len(store.images(chunk)):
                store.write(chunk, Part(
                    logits=torch.cat(logits).cpu().numpy() if logits else np.empty((0, 0), np.float32),
                    indices=torch.cat(indices).numpy() if indices else np.empty(0, np.int64),
                    labels=torch.cat(labels).numpy() if labels else np.empty(0, np.int64),
                    unreadable=unreadable,
                    image_features=torch.cat(features).cpu().numpy() if features else None))
                if progress:
                    progress.chunk_written()
                chunk = next(pending, None)
                logits, features, labels, indices, unreadable, seen = [], [], [], [], {}, 0


class JobProgress:
    """One bar for the whole job, shown by the main process: its own images batch by batch, the
    other processes' as their parts appear; and the closing rate line."""

    def __init__(self, store, place, label):
        from tqdm import tqdm
        self.store, self.place = store, place
        self.done_before = self.finished_images()
        self.bar = tqdm(total=store.num_images, initial=self.done_before, unit="img", smoothing=0.05,
                        desc=f"{label}, images ({plural(place.world_size, 'process', 'processes')})",
                        dynamic_ncols=True, **({} if place.is_main else {"disable": True}))
        self.chunk_images = 0  # this process's images in its chunk in progress
        self.start = self.last_look = self.chunk_start = time.perf_counter()
        self.slowest_chunk = 0.0  # seconds, of this process's chunks

    def finished_images(self):
        return sum(len(self.store.images(chunk)) for chunk in self.store.finished())

    def advance(self, images):
        """This process did `images` more; every WAIT_SECONDS, look at everyone's parts."""
        self.chunk_images += images
        if self.place.world_size == 1:
            self.bar.update(images)
        elif time.perf_counter() - self.last_look >= WAIT_SECONDS:
            self.look()

    def chunk_written(self):
        self.chunk_images = 0
        now = time.perf_counter()
        self.slowest_chunk, self.chunk_start = max(self.slowest_chunk, now - self.chunk_start), now

    def look(self):
        self.last_look = time.perf_counter()
        position = min(self.finished_images() + self.chunk_images, self.store.num_images)
        self.bar.update(position - self.bar.n)

    def wait_for_the_others(self, owners, limit=None):
        """Until every chunk has its part (the other processes' last chunks); ChunksMissing,
        naming them and their process (`owners`, {chunk: rank}), once no part has appeared for
        `limit` seconds (None: the rule above)."""
        if limit is None:
            limit = max(MIN_WAIT_SECONDS, WAIT_FACTOR * self.slowest_chunk)
        last_part, seen = time.perf_counter(), len(self.store.finished())
        while missing := self.store.missing():
            if time.perf_counter() - last_part > limit:
                by_rank = {}
                for chunk in missing:
                    by_rank.setdefault(owners.get(chunk), []).append(chunk)
                raise ChunksMissing(by_rank, time.perf_counter() - last_part)
            time.sleep(min(WAIT_SECONDS, limit))
            self.look()
            if len(self.store.finished()) != seen:
                last_part, seen = time.perf_counter(), len(self.store.finished())
        self.look()

    def __enter__(self):
        return self

    def __exit__(self, *error):
        self.bar.close()  # before an error's message, so that the message is the last line

    def print_rate(self):
        seconds = time.perf_counter() - self.start
        computed = self.store.num_images - self.done_before
        if self.place.is_main and computed:
            print(f"inference: {computed} images in {seconds:.1f} s, {computed / seconds:.1f} "
                  f"images/s in all, {computed / seconds / self.place.world_size:.1f} per process "
                  f"({self.place.world_size} process{'es' * (self.place.world_size > 1)})")


def build_model(config, execution, described, device, place):
    """(module, transform, weights identity). Under torchrun the main process builds first: the
    others then read CLIP's text classifier from the cache it wrote, instead of all computing it."""
    def build():
        if config.model == "clip":
            return models.build_clip_zero_shot(
                config.architecture, config.weights, config.templates, described.names, device,
                config.precision, execution.text_cache_dir, execution.trust_checkpoint, config.features)
        return models.build_debiaspl(config.weights, config.branch, described.imagenet_indices,
                                     execution.trust_checkpoint)

    built = build() if place.is_main else None
    distributed.wait_for_all(place)
    return built or build()


def say_resumed(store, place, computing):
    """One line, before the bar, when earlier runs' parts are reused."""
    finished = store.finished()
    if finished and place.is_main:
        images = sum(len(store.images(chunk)) for chunk in finished)
        rest = (f"computing {computing} on {plural(place.world_size, 'process', 'processes')}"
                if computing else "merging them")
        print(f"resuming: {len(finished)} of {plural(store.num_chunks, 'chunk')} done "
              f"({plural(images, 'image')}), {rest}", flush=True)


def say_set_aside(store, chunks):
    """Check the parts of `chunks`, set the damaged ones aside with a line each; returns those
    chunks, to be computed again."""
    damaged = store.set_aside_damaged(chunks)
    for _, sentence in damaged:
        print(f"note: {sentence}", file=sys.stderr)
    return [chunk for chunk, _ in damaged]


def predict(config, execution, described, source, run_dir):
    """Run the configured model (`config`, InferenceConfig) as `execution` (ExecutionSettings)
    says over the source's samples (sources.sample_source.SampleSource; their classes `described`,
    classes.DatasetClasses) into RUN/predictions.npz; return its Predictions in the main
    process, None in the others."""
    import torch
    place = distributed.current_place()
    wnids = list(described.folders)
    if place.is_main:
        classes.warn_if_not_imagenet100(wnids)
        prompts = (f"; prompts: {plural(len(config.templates), 'template')} from "
                   f"{described.templates_source}" if config.templates else "")
        print(f"{described.dataset}: {plural(len(wnids), 'class', 'classes')} named by "
              f"{described.names_source}{prompts}")
    # The source was indexed before the model loads, so a wrong folder fails in seconds.
    keys = source.keys()
    file_list_sha256 = source.fingerprint()
    torch.set_num_threads(execution.threads or place.cpus)
    device = models.resolve_device(execution.device, place.local_rank)
    models.set_precision(device, config.precision)
    distributed.start(place, execution.barrier_timeout)
    try:
        model, transform, identity = build_model(config, execution, described, device, place)
        manifest = {**config.meta(), "weights_identity": identity, "file_list_sha256": file_list_sha256,
                    "layout": source.layout, "device": device.type, "chunk_size": config.chunk_size}
        store = ChunkStore(run_dir, config.fingerprint(identity, file_list_sha256, device.type,
                                                       described.names),
                           len(keys), config.chunk_size, manifest)
        if place.is_main:
            note = store.prepare()
            if note:
                print(f"note: {note}", file=sys.stderr)
            say_set_aside(store, sorted(store.finished()))  # an earlier run's parts
        distributed.wait_for_all(place)  # the parts checked before anyone lists the missing ones
        missing = store.missing()
        distributed.wait_for_all(place)  # everyone has the same list before any part is written
        owners = {chunk: index % place.world_size for index, chunk in enumerate(missing)}
        own = missing[place.rank::place.world_size]
        compute = functools.partial(
            compute_chunks, model, IndexedImages(source, transform), device,
            config.precision, config.batch_size, place.cpus if execution.workers is None else execution.workers,
            execution.skip_bad_images, store)
        say_resumed(store, place, len(missing))
        with JobProgress(store, place, f"{config.model} on {described.dataset}") as progress:
            compute(own, progress)
            if not place.is_main:
                return None
            progress.wait_for_the_others(owners, execution.chunk_wait)
            # The others' parts (this process wrote its own moments ago): any that is damaged
            # is computed again here, and never merged.
            compute(say_set_aside(store, [chunk for chunk in missing if chunk not in own]), progress)
        progress.print_rate()
    finally:
        distributed.stop(place)
    cache = run_dir / "predictions.npz"
    meta = {**{key: value for key, value in manifest.items() if key != "chunk_size"},
            **source.meta(), "image_files": len(keys)}
    text_features = None
    if config.features:
        text_features = model.text_features
        meta["logit_scale"] = model.scale  # logits = logit_scale x image_features @ text_features.T
    skipped = store.merge(cache, keys, wnids, list(described.names), meta, text_features)
    for index, reason in sorted(skipped.items()):
        print(f"skipped unreadable image {source.describe(index)} ({reason})", file=sys.stderr)
    return load_predictions(cache)
