"""The settings of the runs made from another run's cache, one frozen dataclass per method, as
the CLI builds them from its options (their defaults are the options' defaults). stdlib only."""
from dataclasses import dataclass, field
from pathlib import Path

from inference.config import ExecutionSettings
from runs.kinds import REFERENCE_MODEL


@dataclass(frozen=True)
class LogitAdjustmentSettings:
    """clip-la: s − λ·log p̂, p̂ DebiasPL's moving average of the confident mean softmax."""
    momentum: float = 0.99  # m (DebiasPL's zero-shot script: qhat_m 0.99)
    threshold: float = 0.95  # τ: only images this confident enter a batch's mean
    strength: float = 1.0  # λ
    mode: str = "final"  # final: every image debiased with the last p̂; online: with its batch's
    seed: int = 0  # of the random order the batches are drawn in
    passes: int = 1  # over the images while estimating p̂
    batch_size: int = 64  # images per moving-average update


@dataclass(frozen=True)
class PriorMatchingSettings:
    """clip-pm: s − b, b balancing the mean softmax to the target proportions."""
    target_file: Path | None = None  # JSON {wnid or class name: proportion}; None: uniform


@dataclass(frozen=True)
class ConceptAlignmentSettings:
    """clip-ca: CAP's Algorithm 1, then each mismatched class renamed."""
    seed: int = 0  # of Algorithm 1's K-means and its sample
    names_file: Path | None = None  # JSON {class folder or name: [alternative names]}
    max_images: int | None = None  # Algorithm 1 on a seeded sample above this many images


@dataclass(frozen=True)
class DerivedRunSettings:
    """What a training-free run needs: the run it is made from, its method's settings, and where
    a model runs when one is needed (clip-ca's text encoder for the new names)."""
    source: str = REFERENCE_MODEL  # the run folder under OUT whose cache is used
    logit_adjustment: LogitAdjustmentSettings = field(default_factory=LogitAdjustmentSettings)
    prior_matching: PriorMatchingSettings = field(default_factory=PriorMatchingSettings)
    concept_alignment: ConceptAlignmentSettings = field(default_factory=ConceptAlignmentSettings)
    execution: ExecutionSettings = field(default_factory=ExecutionSettings)
