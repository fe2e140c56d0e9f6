"""Inference: a model over a source of samples (sources/samples.py: a folder, shards, parquet
files, a flat folder with labels), chunk by chunk, into the run's cache.

`predict` indexes the source, builds the model, computes the chunks that have no part yet (under
torchrun, this process's share of them: see chunk_store.py and distributed.py) and, in the main
process, merges the parts into predictions.npz once every chunk has one. Every image carries
its index in the source from the loader to its part, so each is counted exactly once.
"""
import io
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sources import classes
from inference import distributed
from inference import models
from runs.cache import load_predictions
from inference.chunk_store import ChunkStore, Part
from runs.outputs import UserError, plural

WAIT_SECONDS = 1.0  # how often the main process looks for the other processes' parts


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


def compute_chunks(model, dataset, device, precision, batch_size, workers, skip_bad_images, store,
                   chunks, progress=None):
    """Compute `chunks` (in order) and write each one's part the moment it is done. Without
    skip_bad_images a batch holding unreadable files stops the run (a UserError naming them);
    the chunks already written stay. `precision` as set by models.set_precision."""
    import torch
    on_cuda = device.type == "cuda"
    torch.backends.cudnn.benchmark = on_cuda  # every batch is 224 x 224: tune convolutions once
    # Chunks are whole batches (chunk_size is a multiple of batch_size, and only the list's last
    # chunk is shorter), so a chunk's batches are the same whichever process computes it.
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, sampler=[i for chunk in chunks for i in store.images(chunk)],
        num_workers=workers, pin_memory=on_cuda, collate_fn=collate_indexed)
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
        self.start = self.last_look = time.perf_counter()

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

    def look(self):
        self.last_look = time.perf_counter()
        position = min(self.finished_images() + self.chunk_images, self.store.num_images)
        self.bar.update(position - self.bar.n)

    def wait_for_the_others(self):
        """Until every chunk has its part (the other processes' last chunks)."""
        while self.store.missing():
            time.sleep(WAIT_SECONDS)
            self.look()
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


def build_model(config, described, device, args, place):
    """(module, transform, weights identity). Under torchrun the main process builds first: the
    others then read CLIP's text classifier from the cache it wrote, instead of all computing it."""
    def build():
        if config.model == "clip":
            return models.build_clip_zero_shot(
                config.architecture, args.clip_weights, config.templates, described.names, device,
                config.precision, Path(args.out) / "cache", args.trust_checkpoint, config.features)
        return models.build_debiaspl(args.checkpoint, config.branch, described.imagenet_indices,
                                     args.trust_checkpoint)

    built = build() if place.is_main else None
    distributed.wait_for_all(place)
    return built or build()


def predict(config, described, args, source, run_dir):
    """Run the configured model over the source's samples (sources.sample_source.SampleSource; their
    classes `described`, classes.DatasetClasses) into RUN/predictions.npz; return its
    Predictions in the main process, None in the others."""
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
    torch.set_num_threads(args.threads or place.cpus)
    device = models.resolve_device(args.device, place.local_rank)
    models.set_precision(device, config.precision)
    distributed.start(place)
    try:
        model, transform, identity = build_model(config, described, device, args, place)
        manifest = {**config.meta(), "weights_identity": identity, "file_list_sha256": file_list_sha256,
                    "layout": source.layout, "device": device.type, "chunk_size": config.chunk_size}
        store = ChunkStore(run_dir, config.fingerprint(identity, file_list_sha256, device.type,
                                                       described.names),
                           len(keys), config.chunk_size, manifest)
        if place.is_main:
            note = store.prepare()
            if note:
                print(f"note: {note}", file=sys.stderr)
        missing = store.missing()
        distributed.wait_for_all(place)  # everyone has the same list before any part is written
        own = missing[place.rank::place.world_size]
        with JobProgress(store, place, f"{config.model} on {described.dataset}") as progress:
            compute_chunks(model, IndexedImages(source, transform), device, config.precision,
                           config.batch_size, place.cpus if args.workers is None else args.workers,
                           args.skip_bad_images, store, own, progress)
            if not place.is_main:
                return None
            progress.wait_for_the_others()
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
