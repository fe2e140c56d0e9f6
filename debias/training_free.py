"""Training-free debiasing of clip's cached logits, numpy only, no inference:
- `--model clip-la`: logit adjustment with DebiasPL's moving-average pseudo-label prior (homework
  §2.2);
- `--model clip-pm`: prior matching, the class bias that balances the soft predictions on average
  (entropic optimal transport to the class proportions, see logit_adjustment.match_prior).
Both write prior.json in one layout and return Predictions that analysis.analyze treats like any
run's.
"""
import difflib
import sys
from pathlib import Path

import numpy as np

from analysis import run_analysis
from debias import logit_adjustment
import metrics
import plotting
from runs.cache import load_predictions, write_predictions
from runs.errors import MissingRun
from runs.kinds import LOGIT_ADJUSTED_MODEL, PRIOR_MATCHED_MODEL, REFERENCE_MODEL, run_kind
from runs.outputs import UserError, plural, read_json, write_figure, write_json
from runs.descriptors import model_title

LAMBDA_SWEEP = np.linspace(0.0, 2.0, 21)  # λ values of la_sweep.png
TARGET_SUM_TOLERANCE = 1e-6


def load_clip_cache(out_dir, model, source=REFERENCE_MODEL):
    """The cached predictions of the run `source` (default clip), which `model` debiases. Stops
    before anything is written (MissingRun) when they are missing or their class order cannot be
    used."""
    path = Path(out_dir) / source / "predictions.npz"
    if not path.is_file():
        present = sorted(folder.name for folder in Path(out_dir).glob("*")
                         if (folder / "predictions.npz").is_file())
        raise MissingRun(source, source if run_kind(source) else None, f"--model {model}",
                         "debias its cached logits", path, others=present)
    clip = load_predictions(path)
    run_analysis.reference_ranking(out_dir, model, [str(wnid) for wnid in clip.wnids],
                                   derived_meta(model, clip, source))
    return clip


def describe_prior(prior, names):
    """The largest and smallest class of a prior against uniform, for the terminal."""
    ranked = np.argsort(-prior, kind="stable")
    return (f"largest {prior[ranked[0]]:.4f} ({names[ranked[0]]}), smallest "
            f"{prior[ranked[-1]]:.4f} ({names[ranked[-1]]}), uniform {1 / len(prior):.4f}")


def derived_meta(model, clip, source=REFERENCE_MODEL):
    """The meta every run derived from a run's cache starts from: it names that run and carries
    its meta (so a SIMULATED clip makes a SIMULATED clip-la)."""
    return {"model": model, "source_run": source, "source_meta": clip.meta}


def debiased_predictions(clip, source, model, method, settings, class_columns, logits_blocks,
                         run_dir, out_dir, **tables):
    """Write prior.json and the run's predictions.npz, its logits from `logits_blocks` (row blocks
    in order, each written and dropped), and return its Predictions (as read back: memory-mapped).

    prior.json is {"model", "settings", "classes": one entry per class in clip's column order
    with wnid, name and `class_columns` ({column: [K] values}, "prior" first), plus `tables`};
    the Predictions' meta records `settings` under `method`."""
    columns = {column: np.asarray(values, dtype=np.float64) for column, values in class_columns.items()}
    write_json(run_dir / "prior.json", {
        "model": model,
        "settings": settings,
        "classes": [{"wnid": str(wnid), "name": str(name),
                     **{column: float(values[index]) for column, values in columns.items()}}
                    for index, (wnid, name) in enumerate(zip(clip.wnids, clip.names))],
        **tables,
    })
    meta = {**derived_meta(model, clip, source), method: settings,
            "adjusted_cache": str(Path(out_dir) / source / "predictions.npz")}
    cache = run_dir / "predictions.npz"
    write_predictions(cache, logits_blocks, clip.logits.shape, clip.labels, clip.paths, clip.wnids,
                      clip.names, meta)
    return load_predictions(cache)


def lambda_sweep(logits, labels, log_priors_of, strengths):
    """(accuracy, balanced accuracy) arrays of logits − λ·log p̂, one entry per λ in strengths,
    in one pass over the logits' blocks; log_priors_of(rows) is log p̂ for those rows ([K] or
    [rows, K]). Only the correct predictions per class are counted: they are all both need."""
    num_classes = logits.shape[1]
    correct = np.zeros((len(strengths), num_classes), dtype=np.int64)
    for rows in run_analysis.blocks_of(logits):
        block = np.asarray(logits[rows], dtype=np.float64)
        log_prior, block_labels = log_priors_of(rows), labels[rows]
        for index, strength in enumerate(strengths):
            predicted = metrics.predicted_labels(logit_adjustment.shift_logits(block, log_prior, strength))
            correct[index] += metrics.class_counts(block_labels[predicted == block_labels], num_classes)
    true_counts = metrics.class_counts(labels, num_classes)
    accuracy = correct.sum(axis=1) / max(len(labels), 1)
    balanced = [metrics.balanced_accuracy(metrics.recall(hits, true_counts)) for hits in correct]
    return accuracy, np.array(balanced)


def log_priors(estimate, mode):
    """rows -> log p̂ that those images are debiased with: the final p̂ ([K]) in "final" mode,
    the p̂ their batches found ([rows, K]) in "online" mode."""
    if mode == "final":
        log_prior = np.log(estimate.prior)
        return lambda rows: log_prior
    return lambda rows: np.log(estimate.priors_of(rows))


def adjust_clip_predictions(settings, out_dir, run_dir):
    """clip-la's Predictions (the source's cached logits − λ·log p̂), as `settings`
    (DerivedRunSettings) say; writes prior.json and la_sweep.png."""
    source, la = settings.source, settings.logit_adjustment
    clip = load_clip_cache(out_dir, LOGIT_ADJUSTED_MODEL, source)
    batches = logit_adjustment.shuffled_batches(len(clip.labels), la.batch_size, la.seed, la.passes)
    estimate = logit_adjustment.estimate_prior(clip.logits, batches, la.momentum, la.threshold)
    log_priors_of = log_priors(estimate, la.mode)
    recorded = {"momentum": la.momentum, "threshold": la.threshold,
                "lambda": la.strength, "mode": la.mode, "seed": la.seed,
                "passes": la.passes,
                "batch_size": la.batch_size, "num_batches": estimate.num_batches,
                "num_updating_batches": estimate.num_updating_batches}
    strengths = np.union1d(LAMBDA_SWEEP, [la.strength])  # the chosen λ lies on the curves
    accuracy, balanced = lambda_sweep(clip.logits, clip.labels, log_priors_of, strengths)
    write_figure(run_dir / "la_sweep.png", plotting.lambda_sweep_figure(
        strengths, accuracy, balanced, la.strength,
        title=f"{model_title(derived_meta(LOGIT_ADJUSTED_MODEL, clip, source))}: {la.mode} p̂ "
              f"(m = {la.momentum:g}, τ = {la.threshold:g})"))
    if estimate.num_updating_batches == 0:
        print(f"warning: no image reached softmax confidence τ = {la.threshold:g}, so p̂ stayed "
              "uniform and clip-la's predictions are clip's; lower --la-threshold.", file=sys.stderr)
    else:
        print(f"p̂ updated by {estimate.num_updating_batches} of {estimate.num_batches} batches; "
              + describe_prior(estimate.prior, clip.names))
    sweep = [{"lambda": float(strength), "accuracy": float(a), "balanced_accuracy": float(b)}
             for strength, a, b in zip(strengths, accuracy, balanced)]
    return debiased_predictions(
        clip, source, LOGIT_ADJUSTED_MODEL, "logit_adjustment", recorded, {"prior": estimate.prior},
        (logit_adjustment.shift_logits(clip.logits[rows], log_priors_of(rows), la.strength)
         for rows in run_analysis.blocks_of(clip.logits)), run_dir, out_dir, lambda_sweep=sweep)


def first_few(names, count=3):
    """'a, b, c and 7 more': a list too long for one sentence, cut."""
    shown = ", ".join(names[:count])
    return shown + (f" and {len(names) - count} more" if len(names) > count else "")


def read_target(path, wnids, names):
    """--pm-target: the class proportions of a JSON file, keyed by the class folder names
    (`wnids`: ImageNet's wnids) or by the class names, as a [K] array in the order of `wnids`.
    Every class of the dataset must have a positive number, and no other class may appear;
    proportions that do not sum to 1 (counts, say) are normalised, with a note."""
    proportions = read_json(path, "the --pm-target file")
    keys = "class folder names (wnids such as " + wnids[0] + ") or class names"
    if not isinstance(proportions, dict):
        raise UserError(f"the --pm-target file {path} must hold one JSON object of {keys} to "
                        "proportions.")
    column_of = {name: column for column, name in enumerate(names) if names.count(name) == 1}
    column_of.update({wnid: column for column, wnid in enumerate(wnids)})
    unknown = [key for key in proportions if key not in column_of]
    if unknown:
        hints = [f"{key!r}" + "".join(f" (did you mean {match}?)" for match in
                                      difflib.get_close_matches(key, column_of, n=1, cutoff=0.8))
                 for key in unknown]
        raise UserError(f"the --pm-target file {path} names {plural(len(unknown), 'class', 'classes')} "
                        f"that the dataset does not have: {first_few(hints)}; its keys must be the "
                        f"{keys}.")
    by_column = {}
    for key, value in proportions.items():
        if column_of[key] in by_column:
            raise UserError(f"the --pm-target file {path} gives the class {wnids[column_of[key]]} "
                            "twice (by wnid and by name); keep one.")
        by_column[column_of[key]] = value
    missing = [f"{wnids[column]} ({names[column]})" for column in range(len(wnids))
               if column not in by_column]
    if missing:
        raise UserError(f"the --pm-target file {path} lacks {len(missing)} of the dataset's "
                        f"{len(wnids)} classes: {first_few(missing)}; give every class a proportion.")
    for column, value in sorted(by_column.items()):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < np.inf:
            raise UserError(f"the --pm-target file {path} gives {wnids[column]} the proportion "
                            f"{value!r}, but every proportion must be a positive number.")
    target = np.array([by_column[column] for column in range(len(wnids))], dtype=np.float64)
    if abs(target.sum() - 1) > TARGET_SUM_TOLERANCE:
        print(f"note: the proportions in {path} sum to {target.sum():g}; they are divided by it.",
              file=sys.stderr)
    return target / target.sum()


def uniform_target_note(true_counts):
    """clip-pm's default target in one line; on a dataset whose classes hold different numbers
    of images, with the option that matches those instead."""
    note = f"clip-pm target: uniform, 1/{len(true_counts)} of the images to each class"
    if true_counts.min() != true_counts.max():
        note += (f"; this dataset's classes hold {true_counts.min()} to {true_counts.max()} images: "
                 "pass --pm-target FILE with their proportions (the image counts will do) to "
                 "match those instead")
    return note


def match_clip_prior(settings, out_dir, run_dir):
    """clip-pm's Predictions (the source's cached logits − b, with b from prior matching), as
    `settings` (DerivedRunSettings) say; writes prior.json (b, the target and the implied prior
    softmax(b + log target))."""
    source, target_file = settings.source, settings.prior_matching.target_file
    clip = load_clip_cache(out_dir, PRIOR_MATCHED_MODEL, source)
    wnids = [str(wnid) for wnid in clip.wnids]
    if target_file:
        target = read_target(target_file, wnids, [str(name) for name in clip.names])
    else:
        target = np.full(len(wnids), 1.0 / len(wnids))
        print(uniform_target_note(metrics.class_counts(clip.labels, len(wnids))))
    match = logit_adjustment.match_prior(clip.logits, target, logit_adjustment.MATCH_TOLERANCE,
                                         logit_adjustment.MATCH_MAX_ITERATIONS,
                                         run_analysis.blocks_of(clip.logits))
    prior = logit_adjustment.softmax((match.bias + np.log(target))[None])[0]
    recorded = {"target": str(target_file) if target_file else "uniform",
                "tolerance": logit_adjustment.MATCH_TOLERANCE,
                "max_iterations": logit_adjustment.MATCH_MAX_ITERATIONS,
                "iterations": match.iterations, "passes": match.passes,
                "final_deviation": match.deviation, "converged": match.converged}
    if match.converged:
        print(f"prior matching converged after {match.iterations} updates of the bias; implied prior: "
              + describe_prior(prior, clip.names))
    else:
        print(f"warning: prior matching did not converge in {match.iterations} iterations: the mean "
              f"debiased probability of some class still differs from its target by "
              f"{match.deviation:.3g}; clip-pm uses the last bias.", file=sys.stderr)
    return debiased_predictions(
        clip, source, PRIOR_MATCHED_MODEL, "prior_matching", recorded,
        {"prior": prior, "target": target, "bias": match.bias},
        (np.asarray(clip.logits[rows], dtype=np.float64) - match.bias
         for rows in run_analysis.blocks_of(clip.logits)), run_dir, out_dir)
