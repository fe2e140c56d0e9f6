"""Training-free debiasing of clip's cached logits: `--model clip-la` (logit adjustment with
DebiasPL's moving-average pseudo-label prior, homework §2.2). numpy only, no inference.
"""
import sys
from pathlib import Path

import numpy as np

import analysis
import logit_adjustment
import metrics
import plotting
from outputs import (LOGIT_ADJUSTED_MODEL, REFERENCE_MODEL, Predictions, UserError, load_predictions,
                     model_title, write_figure, write_json)

LAMBDA_SWEEP = np.linspace(0.0, 2.0, 21)  # λ values of la_sweep.png


def load_clip_cache(out_dir):
    path = Path(out_dir) / REFERENCE_MODEL / "predictions.npz"
    if not path.is_file():
        raise UserError(f"--model {LOGIT_ADJUSTED_MODEL} adjusts clip's cached logits but {path} "
                        "does not exist: run `python starter.py --model clip` first, with the same --out.")
    return load_predictions(path)


def lambda_sweep(logits, labels, priors, strengths):
    """(accuracy, balanced accuracy) arrays of logits − λ·log(priors), one entry per λ in strengths."""
    num_classes = logits.shape[1]
    accuracy, balanced = [], []
    for strength in strengths:
        predicted = metrics.predicted_labels(logit_adjustment.adjust_logits(logits, priors, strength))
        confusion = metrics.confusion_matrix(labels, predicted, num_classes)
        accuracy.append(metrics.accuracy(confusion))
        balanced.append(metrics.balanced_accuracy(metrics.precision_recall(confusion)[1]))
    return np.array(accuracy), np.array(balanced)


def adjust_clip_predictions(args, out_dir, run_dir):
    """clip-la's Predictions (clip's cached logits − λ·log p̂); writes prior.json and la_sweep.png."""
    clip = load_clip_cache(out_dir)
    # Stop before writing anything when clip's class order cannot be used.
    analysis.reference_order(out_dir, LOGIT_ADJUSTED_MODEL, [str(wnid) for wnid in clip.wnids])
    batches = logit_adjustment.shuffled_batches(len(clip.labels), args.batch_size, args.la_seed,
                                                args.la_passes)
    estimate = logit_adjustment.estimate_prior(clip.logits, batches, args.la_momentum,
                                               args.la_threshold)
    priors = estimate.prior if args.la_mode == "final" else estimate.image_priors
    settings = {"momentum": args.la_momentum, "threshold": args.la_threshold,
                "lambda": args.la_lambda, "mode": args.la_mode, "seed": args.la_seed,
                "passes": args.la_passes,
                "batch_size": args.batch_size, "num_batches": estimate.num_batches,
                "num_updating_batches": estimate.num_updating_batches}
    strengths = np.union1d(LAMBDA_SWEEP, [args.la_lambda])  # the chosen λ lies on the curves
    accuracy, balanced = lambda_sweep(clip.logits, clip.labels, priors, strengths)
    write_json(run_dir / "prior.json", {
        "model": LOGIT_ADJUSTED_MODEL,
        "settings": settings,
        "classes": [{"wnid": str(wnid), "name": str(name), "prior": float(prior)}
                    for wnid, name, prior in zip(clip.wnids, clip.names, estimate.prior)],
        "lambda_sweep": [{"lambda": float(strength), "accuracy": float(a), "balanced_accuracy": float(b)}
                         for strength, a, b in zip(strengths, accuracy, balanced)],
    })
    meta = {"model": LOGIT_ADJUSTED_MODEL, "logit_adjustment": settings,
            "adjusted_cache": str(Path(out_dir) / REFERENCE_MODEL / "predictions.npz"),
            REFERENCE_MODEL: clip.meta}
    write_figure(run_dir / "la_sweep.png", plotting.lambda_sweep_figure(
        strengths, accuracy, balanced, args.la_lambda,
        title=f"{model_title(meta)}: {args.la_mode} p̂ "
              f"(m = {args.la_momentum:g}, τ = {args.la_threshold:g})"))
    if estimate.num_updating_batches == 0:
        print(f"warning: no image reached softmax confidence τ = {args.la_threshold:g}, so p̂ stayed "
              "uniform and clip-la's predictions are clip's; lower --la-threshold.", file=sys.stderr)
    else:
        ranked = np.argsort(-estimate.prior, kind="stable")
        print(f"p̂ updated by {estimate.num_updating_batches} of {estimate.num_batches} batches; "
              f"largest {estimate.prior[ranked[0]]:.4f} ({clip.names[ranked[0]]}), smallest "
              f"{estimate.prior[ranked[-1]]:.4f} ({clip.names[ranked[-1]]}), uniform {1 / len(ranked):.4f}")
    return Predictions(
        logits=logit_adjustment.adjust_logits(clip.logits, priors, args.la_lambda).astype(np.float32),
        labels=clip.labels, paths=clip.paths, wnids=clip.wnids, names=clip.names, meta=meta)
