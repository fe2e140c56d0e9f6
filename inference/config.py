"""One model run's configuration: built once from the command line, recorded as the cache's
meta, hashed to decide whether an earlier run's parts may be reused, and compared with a cache's
meta to say what `--from-cache` shows. stdlib only.
"""
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from inference.distributed import DEFAULT_BARRIER_SECONDS

# A part file of 8,192 images holds 32 MB of logits at 1,000 classes (3 MB at 100): few enough
# files for ImageNet-1k's 1.28M images (157 parts), little lost to a crash.
DEFAULT_CHUNK_IMAGES = 8192
# The options whose difference changes what a cache's results mean (batch and chunk size change
# at most the last bits of the logits).
RESULT_OPTIONS = ("architecture", "prompts", "class_names", "branch", "precision")
OPTION_NAMES = {"architecture": "clip_model"}  # fields named otherwise than their option


def default_chunk_size(batch_size):
    """The multiple of batch_size nearest above DEFAULT_CHUNK_IMAGES."""
    return batch_size * -(-DEFAULT_CHUNK_IMAGES // batch_size)


@dataclass(frozen=True)
class ExecutionSettings:
    """Where and how a model runs; nothing here changes a logit (so none of it is in the cache's
    fingerprint)."""
    device: str = "auto"  # auto, cuda or cpu
    threads: int | None = None  # torch threads per process; None: the process's share of the CPUs
    workers: int | None = None  # data-loading processes; None: as threads
    skip_bad_images: bool = False
    trust_checkpoint: bool = False  # unpickle weight files holding other objects than tensors
    text_cache_dir: Path | None = None  # where CLIP's text classifiers are kept (OUT/cache)
    chunk_wait: float | None = None  # the wait for the other ranks. parts; None: 3 x the slowest chunk, >= 60 s
    barrier_timeout: float = DEFAULT_BARRIER_SECONDS  # of init_process_group and every barrier


@dataclass(frozen=True)
class InferenceConfig:
    """What decides a model run's logits (`--model clip` or `debiaspl`), as the user gave it, and
    the dataset's classes as read from its folder. The options of the other model are None."""
    model: str
    split: str
    weights: str  # --clip-weights or --checkpoint, as given
    architecture: str | None  # clip: --clip-model
    prompts: str | None  # clip
    class_names: str  # --class-names: the ImageNet table's column
    branch: str | None  # debiaspl
    features: bool | None  # clip: keep the image and text embeddings in the cache
    precision: str
    batch_size: int
    chunk_size: int
    title_note: str | None = None  # --title-note: words for the titles, nothing for the logits
    dataset: str | None = None  # the dataset's display name (classes.DatasetClasses)
    names_source: str | None = None  # where the class names come from
    templates_source: str | None = None  # clip: where the prompt templates come from
    templates: tuple | None = None  # clip: the prompt templates, {c} for the class name

    def meta(self):
        """The fields the cache's meta records: those of the other model left out, and the chunk
        size, which changes how the parts were stored but not one bit of the cache."""
        return {key: value for key, value in asdict(self).items()
                if value is not None and key != "chunk_size"}

    def fingerprint(self, weights_identity, file_list_sha256, device_type, class_names=()):
        """SHA-256 of everything a part's logits depend on: the options (not the weights' path,
        which may differ between nodes, but the file's content), the prompts' class names, the
        image file list and the kind of device; not the batch size, so that a run resumed with a
        smaller batch (after running out of GPU memory, say) reuses its parts. Parts with
        another fingerprint are never mixed into this run's cache."""
        options = {key: value for key, value in asdict(self).items()
                   if key not in ("weights", "title_note", "batch_size")}
        content = {key: value for key, value in weights_identity.items() if key != "path"}
        key = json.dumps([options, content, file_list_sha256, device_type, list(class_names)],
                         sort_keys=True)
        return hashlib.sha256(key.encode()).hexdigest()

    def differences(self, meta):
        """How this configuration differs from the one a cache's meta records, as option texts
        ('--prompts single, not ensemble'); options the cache does not record are skipped."""
        return [f"--{OPTION_NAMES.get(option, option).replace('_', '-')} {meta[option]}, not "
                f"{getattr(self, option)}"
                for option in RESULT_OPTIONS
                if getattr(self, option) is not None and meta.get(option, getattr(self, option))
                != getattr(self, option)]
