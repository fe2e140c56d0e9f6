"""The runs this tool knows: their names, titles and the homework question each answers.

Metadata kept as data (stdlib only): the report, the analysis and the CLI read it.
"""

REFERENCE_MODEL = "clip"  # Q2: "keep the same order of classes as in Q1"
LOGIT_ADJUSTED_MODEL = "clip-la"  # clip's cached logits, debiased without training
PRIOR_MATCHED_MODEL = "clip-pm"  # clip's cached logits, balanced by prior matching
MODEL_TITLES = {
    "clip": "CLIP RN50 zero-shot",
    "debiaspl": "DebiasPL (zero-shot, RN50)",
    "clip-la": "CLIP RN50 + logit adjustment",
    "clip-pm": "CLIP RN50 + prior matching",
}
QUESTION_OF_MODEL = {REFERENCE_MODEL: "Q1", "debiaspl": "Q2"}  # the homework's questions
SIMULATED = "SIMULATED"  # in every title drawn from simulated logits (the demo's)


def is_simulated(meta):
    """Whether a run's logits were simulated: its own meta says so, or, for a run derived from
    clip's cached logits (clip-la), the meta of clip's cache it carries."""
    return bool(meta.get("simulated") or meta.get(REFERENCE_MODEL, {}).get("simulated"))


def model_title(meta):
    """The run's model title, prefixed with SIMULATED when its logits were simulated."""
    title = MODEL_TITLES.get(meta["model"], meta["model"])
    return f"{SIMULATED} {title}" if is_simulated(meta) else title
