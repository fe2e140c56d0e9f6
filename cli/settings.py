"""Settings as data: each stage's frozen dataclass, built from the parsed options here and only
here. No function below the CLI sees the argparse Namespace."""
from pathlib import Path

from debias.settings import (ConceptAlignmentSettings, DerivedRunSettings, LogitAdjustmentSettings,
                             PriorMatchingSettings)
from inference.config import ExecutionSettings, InferenceConfig, default_chunk_size
from runs.kinds import ZERO_SHOT_CLIP, nature_of


def execution_settings(args):
    return ExecutionSettings(device=args.device, threads=args.threads, workers=args.workers,
                             skip_bad_images=args.skip_bad_images,
                             trust_checkpoint=args.trust_checkpoint,
                             text_cache_dir=Path(args.out) / "cache", chunk_wait=args.chunk_wait,
                             barrier_timeout=args.barrier_timeout)


def inference_config(args, split, described=None):
    """The model run's configuration; `described` (classes.DatasetClasses) when the dataset's
    folder has been read, else its fields stay None (a run from cache)."""
    clip = nature_of(args.model) == ZERO_SHOT_CLIP
    dataset_fields = {} if described is None else {
        "dataset": described.dataset, "names_source": described.names_source,
        "templates_source": described.templates_source if clip else None,
        "templates": described.templates if clip else None}
    return InferenceConfig(model=args.model, split=split,
                           weights=str(args.clip_weights if clip else args.checkpoint),
                           architecture=args.clip_model if clip else None,
                           prompts=args.prompts if clip else None, class_names=args.class_names,
                           branch=None if clip else args.branch,
                           features=not args.no_features if clip else None, precision=args.precision,
                           batch_size=args.batch_size,
                           chunk_size=args.chunk_size or default_chunk_size(args.batch_size),
                           title_note=args.title_note, **dataset_fields)


def derived_run_settings(args):
    """The settings of a training-free run (clip-la, clip-pm, clip-ca, or a kind of their
    nature)."""
    return DerivedRunSettings(
        source=args.source,
        logit_adjustment=LogitAdjustmentSettings(
            momentum=args.la_momentum, threshold=args.la_threshold, strength=args.la_lambda,
            mode=args.la_mode, seed=args.la_seed, passes=args.la_passes, batch_size=args.batch_size),
        prior_matching=PriorMatchingSettings(target_file=args.pm_target),
        concept_alignment=ConceptAlignmentSettings(seed=args.ca_seed, names_file=args.ca_names,
                                                   max_images=args.ca_max_images),
        execution=execution_settings(args))
