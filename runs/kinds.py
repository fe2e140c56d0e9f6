"""The registry of run kinds: what `--model X` makes, in one entry per kind.

The parser (its --model choices, help and option notes), starter (which function makes the run),
the run folders (names, titles, run.json), the report (its questions, the files it reads) and the
explorer all read this registry. Adding a kind is one `register(RunKind(...))` and its function.
stdlib only: `--help` reads it without torch, and a kind's function is imported only when it runs.
"""
import importlib
from dataclasses import dataclass

ZERO_SHOT_CLIP, CHECKPOINT, TRAINING_FREE = "zero-shot CLIP", "checkpoint", "training-free"
NATURES = (ZERO_SHOT_CLIP, CHECKPOINT, TRAINING_FREE)
MODEL_NATURES = (ZERO_SHOT_CLIP, CHECKPOINT)  # kinds that run a model over images


@dataclass(frozen=True)
class RunKind:
    """One kind of run. `maker` is "package.module:function", imported only when the kind runs:
    for a model (ZERO_SHOT_CLIP, CHECKPOINT) it is called with (inference settings, the dataset,
    run folder), for a TRAINING_FREE kind with (debias settings, OUT, run folder); either returns
    the run's Predictions, cached in the run folder (None in a torchrun job's other processes)."""
    name: str  # --model's value, and the run folder's default name
    nature: str  # one of NATURES
    title: str  # the title of its run on the homework's model and data ("CLIP RN50 zero-shot")
    help: str  # what it is, for --help's --model
    maker: str
    options: tuple = ()  # the options (argparse dests) only this kind takes
    method: str | None = None  # TRAINING_FREE: the method, in a derived run's title
    folder_suffix: str | None = None  # TRAINING_FREE on another source: <source>-<suffix>/
    extra_files: tuple = ()  # the JSON files it writes beyond every run's, which the report reads
    question: str | None = None  # the homework question its run answers, if any
    needs_features: bool = False  # TRAINING_FREE: needs its source's cached CLIP features

    def make(self, *arguments):
        module, _, function = self.maker.partition(":")
        return getattr(importlib.import_module(module), function)(*arguments)


RUN_KINDS = {}  # {name: RunKind}, in the report's order


def register(kind):
    """Add a run kind; the name must be new and the nature known."""
    if kind.name in RUN_KINDS:
        raise ValueError(f"a run kind named {kind.name!r} is registered already")
    if kind.nature not in NATURES:
        raise ValueError(f"{kind.name}: nature {kind.nature!r} is not one of {NATURES}")
    RUN_KINDS[kind.name] = kind
    return kind


def unregister(name):
    """Remove a run kind (a test's own, when the test ends)."""
    del RUN_KINDS[name]


def run_kind(name):
    """The registered kind called `name`, or None (a brought cache's folder name, say)."""
    return RUN_KINDS.get(name)


def kind_names(nature=None):
    """The registered kinds' names, in the registry's order; only those of `nature` if given."""
    return tuple(name for name, kind in RUN_KINDS.items() if nature in (None, kind.nature))


def nature_of(name):
    """The nature of the kind called `name`, or None when no such kind is registered."""
    kind = run_kind(name)
    return kind and kind.nature


def homework_questions():
    """{kind name: question} of the kinds whose runs answer the homework's questions, in the
    questions' order ({"clip": "Q1", "debiaspl": "Q2"})."""
    return {name: kind.question for name, kind in sorted(RUN_KINDS.items(), key=lambda item: item[1].question or "")
            if kind.question}


REFERENCE_MODEL = "clip"  # Q2: "keep the same order of classes as in Q1"
LOGIT_ADJUSTED_MODEL = "clip-la"
PRIOR_MATCHED_MODEL = "clip-pm"
CONCEPT_ALIGNED_MODEL = "clip-ca"

register(RunKind(
    REFERENCE_MODEL, ZERO_SHOT_CLIP, "CLIP RN50 zero-shot",
    "Q1; any open_clip model with --clip-model", "inference.engine:predict",
    options=("clip_model", "clip_weights", "prompts", "templates", "no_features", "title_note", "labels",
             "rescore"),
    question="Q1"))
register(RunKind(
    "debiaspl", CHECKPOINT, "DebiasPL (zero-shot, RN50)", "Q2; run clip first",
    "inference.engine:predict", options=("checkpoint", "branch", "title_note", "labels"), question="Q2"))
register(RunKind(
    LOGIT_ADJUSTED_MODEL, TRAINING_FREE, "CLIP RN50 + logit adjustment", "a run's cached logits, "
    "logit-adjusted", "debias.training_free:adjust_clip_predictions",
    options=("source", "la_momentum", "la_threshold", "la_lambda", "la_mode", "la_seed", "la_passes"),
    method="logit adjustment", folder_suffix="la", extra_files=("prior.json",)))
register(RunKind(
    PRIOR_MATCHED_MODEL, TRAINING_FREE, "CLIP RN50 + prior matching", "prior-matched",
    "debias.training_free:match_clip_prior", options=("source", "pm_target"),
    method="prior matching", folder_suffix="pm", extra_files=("prior.json",)))
register(RunKind(
    CONCEPT_ALIGNED_MODEL, TRAINING_FREE, "CLIP RN50 + concept alignment",
    "a CLIP run's cached features, its concept-mismatched classes renamed",
    "debias.concept_alignment:align_clip_concepts", options=("source", "ca_seed", "ca_names",
                                                              "ca_max_images"),
    method="concept alignment", folder_suffix="ca", extra_files=("alignment.json",),
    needs_features=True))
