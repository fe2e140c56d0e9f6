"""The runs: what --model makes, how a run folder is named and titled, and the descriptor
(run.json) by which the report, the comparison and the explorer find every run in OUT.

The homework's runs (clip for Q1, debiaspl for Q2, then clip-la, clip-pm and clip-ca) are the
defaults, not the only case: any open_clip model on any dataset makes a run folder of its own.
Metadata kept as data (stdlib only): the report, the analysis and the CLI read it.
"""
import re
from pathlib import Path

from runs.outputs import read_json, write_json
from runs.kinds import CHECKPOINT, REFERENCE_MODEL, RUN_KINDS, TRAINING_FREE, ZERO_SHOT_CLIP, nature_of, run_kind

SIMULATED = "SIMULATED"  # in every title drawn from simulated logits (the demo's)
DEFAULT_CLIP_ARCHITECTURE = "RN50"  # the homework's: OpenAI's RN50
HOMEWORK_DATASET = "ImageNet100"
NO_META = "unknown (no meta in the cache)"  # a cache another tool wrote
RUN_FILE = "run.json"


def source_meta(meta):
    """The meta of the cache a training-free run was derived from ({} for the others); caches
    from before --source kept clip's under "clip"."""
    return meta.get("source_meta") or meta.get(REFERENCE_MODEL) or {}


def is_simulated(meta):
    """Whether a run's logits were simulated: its own meta says so, or, for a run derived from
    another run's cache, that cache's meta."""
    return bool(meta.get("simulated") or source_meta(meta).get("simulated"))


def run_split(meta):
    """The split a run's images are from: its own meta's, or its source's; val for caches from
    before splits (and other tools')."""
    return meta.get("split") or source_meta(meta).get("split") or "val"


def run_dataset(meta):
    """The dataset's display name, or None where the meta does not say (older caches, other
    tools')."""
    return meta.get("dataset") or source_meta(meta).get("dataset")


def is_known_clip(meta):
    """Whether the run's logits are known to be CLIP's (logit scale x cosine): made by this tool
    from CLIP, directly or through a training-free method. A cache another tool wrote is not."""
    if meta.get("provenance") == NO_META:
        return False
    if nature_of(meta["model"]) == TRAINING_FREE:
        return bool(source_meta(meta)) and is_known_clip(source_meta(meta))
    return nature_of(meta["model"]) == ZERO_SHOT_CLIP


def weights_label(weights):
    """An open_clip tag as it is, a weights file by its file name."""
    return Path(str(weights)).name


def base_title(meta):
    """The title of the model alone: the homework's for its own runs, else built from the meta;
    a cache another tool wrote is titled by its folder's name."""
    model = meta["model"]
    if meta.get("provenance") == NO_META:
        return model
    kind = run_kind(model)
    if kind is None:
        return model
    if kind.nature == TRAINING_FREE and meta.get("source_meta"):
        return f"{base_title(meta['source_meta'])} + {kind.method}"
    architecture = meta.get("architecture", DEFAULT_CLIP_ARCHITECTURE)
    if kind.nature == ZERO_SHOT_CLIP and architecture != DEFAULT_CLIP_ARCHITECTURE:
        return f"CLIP {architecture} ({weights_label(meta['weights'])}) zero-shot"
    return kind.title


def model_title(meta):
    """The run's title: the model, the dataset when not the homework's ImageNet100, the
    --title-note, the split when not val; prefixed with SIMULATED when its logits were."""
    title = base_title(meta)
    dataset = run_dataset(meta)
    if dataset and dataset != HOMEWORK_DATASET and meta.get("provenance") != NO_META:
        title = f"{title} on {dataset}"
    if meta.get("title_note"):
        title = f"{title} ({meta['title_note']})"
    if run_split(meta) != "val":
        title = f"{title}, {run_split(meta)} split"
    return f"{SIMULATED} {title}" if is_simulated(meta) else title


def question_of(run_id, meta):
    """The homework question a run answers ("Q1", "Q2"), or None: only the homework's own runs,
    RN50 (or a cache brought in their place) in the folders clip and debiaspl."""
    if run_id != meta["model"] or meta.get("architecture", DEFAULT_CLIP_ARCHITECTURE) != DEFAULT_CLIP_ARCHITECTURE:
        return None
    kind = run_kind(run_id)
    return kind and kind.question


def folder_safe(text):
    """A name fit for a folder: runs of other characters than letters, digits, '.', '_' and '-'
    become one '-'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", str(text)).strip("-")


def default_run_name(model, architecture=None, weights=None, dataset=None, source=REFERENCE_MODEL):
    """The run folder of --model without --run-name: the homework's names for the homework's runs
    (clip: RN50 on ImageNet classes), `clip-<architecture>-<weights>` for another CLIP, with
    `<dataset>-` ahead for a dataset whose classes are not ImageNet's, and `<source>-la` (-pm,
    -ca) for a training-free run on another source than clip."""
    kind = run_kind(model)
    if kind.nature == TRAINING_FREE:
        return model if source == REFERENCE_MODEL else f"{source}-{kind.folder_suffix or model}"
    name = model
    if kind.nature == ZERO_SHOT_CLIP and architecture not in (None, DEFAULT_CLIP_ARCHITECTURE):
        name = f"clip-{architecture}-{Path(str(weights)).stem}"
    return folder_safe(f"{dataset}-{name}" if dataset else name)


def source_run(meta):
    """The run a training-free run debiased (clip for caches from before --source), else None."""
    if nature_of(meta["model"]) != TRAINING_FREE:
        return None
    return meta.get("source_run", REFERENCE_MODEL)


def order_reference(meta):
    """The run whose class order a run's figures keep, or None for its own: clip for debiaspl
    (Q2: "the same order of classes as in Q1"), the source for a training-free run."""
    if nature_of(meta["model"]) == CHECKPOINT:
        return REFERENCE_MODEL
    return source_run(meta)


def descriptor(run_id, meta):
    """run.json: what the run is, for the report, the comparison and the explorer to find it."""
    return {"id": run_id, "model": meta["model"], "kind": nature_of(meta["model"]),
            "title": model_title(meta), "architecture": meta.get("architecture"),
            "weights": meta.get("weights"), "dataset": run_dataset(meta), "split": run_split(meta),
            "source": source_run(meta), "order_reference": order_reference(meta),
            "question": question_of(run_id, meta), "clip": is_known_clip(meta),
            "simulated": is_simulated(meta)}


def write_descriptor(run_dir, meta):
    write_json(Path(run_dir) / RUN_FILE, descriptor(Path(run_dir).name, meta))


def find_runs(out_dir):
    """{run id: descriptor} of every run folder in out_dir: those with run.json, and those with
    only a cache or metrics.json (another tool's, or from before run.json), described from their
    meta. The homework's runs first, in MODELS' order, then the others by dataset and name."""
    found = {}
    for folder in sorted(path for path in Path(out_dir).iterdir() if path.is_dir()) if Path(out_dir).is_dir() else ():
        if (folder / RUN_FILE).is_file():
            found[folder.name] = read_json(folder / RUN_FILE, f"the run descriptor {folder / RUN_FILE}")
        elif (folder / "metrics.json").is_file():
            settings = read_json(folder / "metrics.json", f"{folder.name}'s metrics").get("settings", {})
            found[folder.name] = descriptor(folder.name, {"model": folder.name, **settings})
        elif (folder / "predictions.npz").is_file():
            found[folder.name] = descriptor(folder.name, {"model": folder.name, "provenance": NO_META})
    homework = [run for run in RUN_KINDS if run in found]
    others = sorted(set(found) - set(homework), key=lambda run: (found[run]["dataset"] or "", run))
    return {run: found[run] for run in homework + others}


def split_out_dir(out, split):
    """Where a split's runs go: OUT itself for val (the homework's), OUT/<split> otherwise, so
    that a train run never overwrites a val run and clip's class order is the same split's."""
    return Path(out) if split == "val" else Path(out) / split
