"""The runs this tool knows: their names, titles and the homework question each answers.

Metadata kept as data (stdlib only): the report, the analysis and the CLI read it.
"""
import shlex
from pathlib import Path

REFERENCE_MODEL = "clip"  # Q2: "keep the same order of classes as in Q1"
LOGIT_ADJUSTED_MODEL = "clip-la"  # clip's cached logits, debiased without training
PRIOR_MATCHED_MODEL = "clip-pm"  # clip's cached logits, balanced by prior matching
CONCEPT_ALIGNED_MODEL = "clip-ca"  # clip's cached features, mismatched classes renamed
MODEL_TITLES = {
    "clip": "CLIP RN50 zero-shot",
    "debiaspl": "DebiasPL (zero-shot, RN50)",
    "clip-la": "CLIP RN50 + logit adjustment",
    "clip-pm": "CLIP RN50 + prior matching",
    "clip-ca": "CLIP RN50 + concept alignment",
}
QUESTION_OF_MODEL = {REFERENCE_MODEL: "Q1", "debiaspl": "Q2"}  # the homework's questions
SIMULATED = "SIMULATED"  # in every title drawn from simulated logits (the demo's)


def is_simulated(meta):
    """Whether a run's logits were simulated: its own meta says so, or, for a run derived from
    clip's cached logits (clip-la), the meta of clip's cache it carries."""
    return bool(meta.get("simulated") or meta.get(REFERENCE_MODEL, {}).get("simulated"))


def run_split(meta):
    """The split a run's images are from: its own meta's, or for a run derived from clip's
    cached logits, clip's; val for caches from before splits (and other tools')."""
    return meta.get("split") or meta.get(REFERENCE_MODEL, {}).get("split") or "val"


def model_title(meta):
    """The run's model title, prefixed with SIMULATED when its logits were simulated and
    suffixed with its --title-note and its split when that is not the homework's val."""
    title = MODEL_TITLES.get(meta["model"], meta["model"])
    if meta.get("title_note"):
        title = f"{title} ({meta['title_note']})"
    if run_split(meta) != "val":
        title = f"{title}, {run_split(meta)} split"
    return f"{SIMULATED} {title}" if is_simulated(meta) else title


def split_out_dir(out, split):
    """Where a split's runs go: OUT itself for val (the homework's), OUT/<split> otherwise, so
    that a train run never overwrites a val run and clip's class order is the same split's."""
    return Path(out) if split == "val" else Path(out) / split


def starter_command(model, where=(), *options):
    """The command that makes `model`'s run, in the user's own folders: `where` holds the options
    of the command at hand that say where its data and outputs are (options.py's `args.where`)."""
    return shlex.join(["python", "starter.py", "--model", model, *where, *options])
