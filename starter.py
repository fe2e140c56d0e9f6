#!/usr/bin/env python3
"""How imbalanced are CLIP's pseudo-labels, and what does debiasing do to them?

Runs OpenAI's CLIP RN50 zero-shot (`--model clip`) or the DebiasPL zero-shot checkpoint
(`--model debiaspl`) over an ImageNet(100) validation folder and writes, under OUT/<model>/,
the cached logits, per-class metrics, the ordered histograms (Q1a/Q2a), the confusion matrix
(Q1b/Q2b), the centroid neighbours (Q1c/Q2c) of homework 3 and which pseudo-labels a
semi-supervised learner would select. `--model clip-la` and `--model clip-pm` run no model: they
debias clip's cached logits without training, by logit adjustment with DebiasPL's moving-average
pseudo-label prior (homework §2.2) or by prior matching, and analyse them the same way.

    python starter.py --model clip
    python starter.py --model debiaspl
    python starter.py --model clip-la   # after clip
    python starter.py --model clip-pm   # after clip
    python starter.py --demo            # install check, then SIMULATED runs through it all
    python starter.py --report          # OUT/report.pdf and report.md from the runs in OUT
    python starter.py --explore         # OUT/explorer.html alone (--report and --demo write it too)

torch, torchvision and open_clip are imported only when inference runs, so `--from-cache`
redoes every figure and number from predictions.npz in seconds.
"""
import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

import analysis
import classes
import training_free
from explorer import DEFAULT_THUMBNAILS, EXPLORER_FILE
from models import PRECISIONS, SINGLE_PROMPT
from cache import load_predictions, save_predictions
from distributed import current_place
from run_config import DEFAULT_CHUNK_IMAGES, InferenceConfig
from figure_workers import figure_processes, terminate_as_interrupt
from outputs import UserError
from runs import (CONCEPT_ALIGNED_MODEL, LOGIT_ADJUSTED_MODEL, MODEL_TITLES, PRIOR_MATCHED_MODEL,
                  SIMULATED, split_out_dir)

PROJECT_DIR = Path(__file__).resolve().parent
COURSE_DATA_DIR = "/scratch/eecs542f25_class_root/eecs542f25_class/shared_data/imagenet-100"
# The demo's install check: real code and random weights on a few classes (CLIP's text encoder
# costs ~0.25 s per class name on a CPU) and images.
DEMO_CLASSES = 5
DEMO_IMAGES_PER_CLASS = 2


def build_parser():
    parser = argparse.ArgumentParser(
        description="Pseudo-label imbalance of CLIP RN50 and DebiasPL on ImageNet100 (homework 3).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model", choices=sorted(MODEL_TITLES),
                        help="which model to evaluate: clip (Q1), debiaspl (Q2; run clip first), "
                             "clip-la (clip's cached logits, logit-adjusted; run clip first), "
                             "clip-pm (clip's cached logits, prior-matched; run clip first) or "
                             "clip-ca (clip's cached features, its concept-mismatched classes "
                             "renamed; run clip first)")
    parser.add_argument("--demo", action="store_true",
                        help="check the install (random weights in the real file formats on a few "
                             "generated images, into OUT/demo/install-check/), then analyse "
                             "SIMULATED clip and debiaspl runs shaped like the real ones, with "
                             "clip-la, clip-pm and the report, into OUT/demo/")
    parser.add_argument("--data", default=os.environ.get("IMAGENET100_ROOT", COURSE_DATA_DIR),
                        help="dataset root holding val/ (and train/), or a split folder itself; "
                             "the default is $IMAGENET100_ROOT when set, else the course's copy")
    parser.add_argument("--split", choices=classes.SPLITS,
                        help="which split folder of the root: val (the homework's), or train "
                             "(the images a semi-supervised learner pseudo-labels: ImageNet-1k's "
                             "1.28M); train runs write to OUT/train/<model>/, so they never "
                             "overwrite a val run. The default is val, or the name of a split "
                             "folder given as --data")
    parser.add_argument("--out", default=str(PROJECT_DIR / "figures"),
                        help="output folder; each model writes to OUT/<model>/ (val) or "
                             "OUT/train/<model>/")
    parser.add_argument("--from-cache", action="store_true",
                        help="skip inference: redo metrics and figures from OUT/<model>/predictions.npz")
    parser.add_argument("--report", action="store_true",
                        help="write OUT/report.pdf, OUT/report.md and OUT/comparison.png from the "
                             "runs already in OUT (after --model's run when both are given; "
                             "--demo always writes its own)")
    parser.add_argument("--explore", action="store_true",
                        help=f"write OUT/{EXPLORER_FILE} alone from the runs already in OUT: one "
                             "interactive page that opens offline (--report and --demo write it "
                             "too)")
    parser.add_argument("--thumbnails", type=int, default=DEFAULT_THUMBNAILS, metavar="N",
                        help=f"images embedded in {EXPLORER_FILE} per confusion cell, the most "
                             "confident first, where a run's image folder is readable (0: none)")
    handed_in = parser.add_argument_group("report (--report, --demo)")
    handed_in.add_argument("--name", default="",
                           help="your name at the top of report.pdf (else a line to write on)")
    handed_in.add_argument("--student-id", default="",
                           help="your student ID at the top of report.pdf (else a line to write on)")
    handed_in.add_argument("--bundle", action="store_true",
                           help="write OUT/code.zip, the code ZIP the homework asks for: this "
                                "tool's source, README, requirements and tests in one folder, "
                                "never weights, caches, figures or data")
    handed_in.add_argument("--appendix", action="store_true",
                           help="add the per-class tables, clip-la's prior and the other runs' "
                                "figures as an appendix")
    clip = parser.add_argument_group("CLIP (--model clip)")
    clip.add_argument("--clip-weights", default="openai",
                      help="'openai' (open_clip downloads OpenAI's RN50 weights) or a local file: "
                           "OpenAI's RN50.pt or a saved open_clip RN50 state dict")
    clip.add_argument("--prompts", choices=("ensemble", "single"), default="ensemble",
                      help="ensemble: OpenAI's 80 ImageNet templates (CLIP's published protocol); "
                           f"single: exactly {SINGLE_PROMPT!r}")
    clip.add_argument("--no-features", action="store_true",
                      help="keep only the logits in the cache, not CLIP's image embeddings [N, D] "
                           "and class text embeddings [K, D] (image_features, text_features; "
                           "D = 1,024 for RN50: 4 KB an image, 5 GB for ImageNet-1k's training "
                           "set)")
    clip.add_argument("--class-names", choices=sorted(classes.CLASS_NAME_COLUMNS), default="openai",
                      help="the class names in CLIP's prompts, figures and tables: openai (CLIP's "
                           "curated names, its published protocol) or wordnet (each wnid's first "
                           "WordNet lemma, as the course's starter code uses); debiaspl uses them "
                           "for display only")
    debiaspl = parser.add_argument_group("DebiasPL (--model debiaspl)")
    debiaspl.add_argument("--checkpoint", default="./debiaspl_zsl_epoch50.pth.tar",
                          help="the DebiasPL FixMatch checkpoint (.pth.tar)")
    debiaspl.add_argument("--branch", choices=("main", "ema"), default="main",
                          help="which network of the checkpoint: main (what the DebiasPL repository "
                               "evaluates) or ema (its EMA teacher)")
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help="load weight files that hold Python objects other than tensors and "
                             "numpy scalars; unpickling such a file can run code from it, so only "
                             "for files from a source you trust")
    inference = parser.add_argument_group("inference")
    inference.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto",
                           help="auto = cuda when available")
    inference.add_argument("--precision", choices=PRECISIONS, default="fp32",
                           help="fp32: exact, TF32 off, so a GPU run's logits equal a CPU run's "
                                "(CLIP's near-tied predictions do not flip); fp16 / bf16: autocast "
                                "on a CUDA GPU, faster on slow GPUs, ~1e-3 off")
    inference.add_argument("--batch-size", type=int, default=64,
                           help="images per forward pass; for clip-la, images per moving-average "
                                "update of the prior p̂")
    inference.add_argument("--chunk-size", type=int, metavar="N",
                           help="images per part file, a multiple of --batch-size: each chunk's "
                                "logits are written the moment it is done, and running the same "
                                "command again computes only the missing chunks; the default is "
                                f"the multiple of --batch-size nearest above {DEFAULT_CHUNK_IMAGES}")
    inference.add_argument("--workers", type=int,
                           help="data-loading processes per process (0 = load in the process "
                                "itself); the default is the process's share of the CPUs it may "
                                "use (e.g. a Slurm allocation's): all of them alone, 1/G of them "
                                "under torchrun --nproc-per-node G")
    inference.add_argument("--threads", type=int,
                           help="torch threads per process; the default is the process's share of "
                                "the usable CPUs, as for --workers")
    inference.add_argument("--skip-bad-images", action="store_true",
                           help="evaluate the images that can be read and list the unreadable ones "
                                "in metrics.json under 'skipped'; without it, unreadable images stop "
                                "the run and are named")
    adjustment = parser.add_argument_group(
        "logit adjustment (--model clip-la)",
        "clip's cached logits s become s − λ·log p̂, where p̂ starts uniform and, over batches of "
        "--batch-size images in a seeded random order, p̂ ← m·p̂ + (1 − m)·(mean softmax "
        "probability, before debiasing, of the batch's images whose top probability is ≥ τ).")
    adjustment.add_argument("--la-momentum", type=unit_interval, default=0.99, metavar="m",
                            help="moving-average momentum m of p̂ (DebiasPL's zero-shot script "
                                 "uses qhat_m 0.99)")
    adjustment.add_argument("--la-threshold", type=unit_interval, default=0.95, metavar="τ",
                            help="confidence threshold τ: only images whose top softmax probability "
                                 "is ≥ τ enter a batch's mean; a batch with none leaves p̂ unchanged")
    adjustment.add_argument("--la-lambda", type=finite_float, default=1.0, metavar="λ",
                            help="adjustment strength λ in s − λ·log p̂ (0 leaves clip unchanged; "
                                 "la_sweep.png shows λ from 0 to 2)")
    adjustment.add_argument("--la-mode", choices=("final", "online"), default="final",
                            help="final: every image debiased with p̂ after the last batch; online: "
                                 "each batch debiased with p̂ as it is before that batch's update, as "
                                 "DebiasPL debiases its pseudo-labels (so the first batch keeps "
                                 "clip's predictions)")
    adjustment.add_argument("--la-seed", type=int, default=0,
                            help="seed of the random image order the batches are drawn in (the cache "
                                 "is sorted by class: unshuffled batches would hold one class each)")
    adjustment.add_argument("--la-passes", type=int, default=1,
                            help="passes over the images while estimating p̂, each in a new "
                                 "random order; online mode debiases with the last pass's p̂. "
                                 "One pass of 79 batches (ImageNet100, batch 64) leaves "
                                 "0.99^79 ≈ 45%% of the uniform start in p̂; DebiasPL's estimate "
                                 "runs through 50 epochs")
    alignment = parser.add_argument_group(
        "concept alignment (--model clip-ca)",
        "CAP's Algorithm 1 finds the classes whose text embedding misses their images in clip's "
        "cached image features; each is renamed to the WordNet synonym whose CLIP text embedding "
        "best matches a cluster of the images left unmatched, and the logits are recomputed from "
        "the cached features.")
    alignment.add_argument("--ca-seed", type=int, default=0,
                           help="seed of Algorithm 1's K-means (and of its sample)")
    alignment.add_argument("--ca-max-images", type=int, metavar="N",
                           help="above N images, Algorithm 1 runs on a seeded sample of N (its "
                                "cost grows as images x classes^2); the default is concepts.py's "
                                "MAX_DETECTION_IMAGES, 50,000")
    matching = parser.add_argument_group(
        "prior matching (--model clip-pm)",
        "clip's cached logits s become s − b, where b is the class bias for which the mean softmax "
        "probability of s − b over the images equals the target proportion of every class "
        "(entropic optimal transport of the images to the classes).")
    matching.add_argument("--pm-target", type=Path, metavar="FILE",
                          help="JSON object {wnid: proportion} for every class of the dataset, for "
                               "a dataset that is not balanced; proportions that do not sum to 1 "
                               "(image counts, say) are normalised; without it, uniform")
    return parser


def unit_interval(text):
    """argparse type: a number from 0 to 1."""
    value = finite_float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1")
    return value


def finite_float(text):
    """argparse type: a finite number (not nan or inf)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not np.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text} is not a finite number")
    return value


def chosen_split(args):
    """The run's split: --split, else the one --data names (its val folder, or a split folder
    given directly); val when --data is not on this machine (a run from cache)."""
    if args.split or not Path(args.data).expanduser().is_dir():
        return args.split or classes.SPLITS[0]
    return classes.resolve_split_dir(args.data)[0]


def cache_differences(meta, args, split):
    """How the options of this --from-cache run differ from those that made the cache."""
    differences = InferenceConfig.from_args(args, split).differences(meta)
    weights_option = {"clip": "clip_weights", "debiaspl": "checkpoint"}.get(meta["model"])
    cached_file = meta.get("weights_identity", {}).get("path")
    if weights_option and cached_file:
        weights = Path(str(getattr(args, weights_option))).expanduser()
        if weights.is_file() and (str(weights.resolve()) != cached_file
                                  or weights.stat().st_size != meta["weights_identity"]["bytes"]):
            differences.append(f"the weights {cached_file}, not {weights}")
    data = Path(args.data).expanduser()
    if meta.get("file_list_sha256") and data.is_dir():
        split_dir = classes.resolve_split_dir(data, split)[1]
        if classes.file_list_identity(classes.list_image_files(split_dir)) != meta["file_list_sha256"]:
            differences.append(f"other image files than {split_dir} holds now")
    return differences


def run(args):
    split = chosen_split(args)
    out_dir = split_out_dir(args.out, split)
    run_dir = out_dir / args.model
    cache = run_dir / "predictions.npz"
    if args.from_cache:
        predictions = load_predictions(cache)
        for difference in cache_differences(predictions.meta, args, split):
            print(f"note: {cache} was made with {difference}; its results are shown as cached.",
                  file=sys.stderr)
    elif args.model in training_free.TRAINING_FREE_RUNS:
        predictions = training_free.TRAINING_FREE_RUNS[args.model](args, out_dir, run_dir)  # cached by it
    elif args.model == CONCEPT_ALIGNED_MODEL:
        import concept_alignment  # scikit-learn, and CLIP's text encoder for the new names
        predictions = concept_alignment.align_clip_concepts(args, out_dir, run_dir)
    else:
        # A wrong setup (no clip run, other classes) stops here, before any model loads.
        split, split_dir = classes.resolve_split_dir(args.data, split)
        analysis.reference_order(out_dir, args.model, classes.find_class_folders(split_dir))
        import inference  # torch and the models load only when a model runs
        predictions = inference.predict(InferenceConfig.from_args(args, split), args, split_dir, run_dir)
        if predictions is None:  # another process of a torchrun job: the main one analyses
            return
    print(analysis.format_report(*analysis.analyze(predictions, run_dir, out_dir)))
    print(f"outputs in {run_dir}")


def run_demo(args):
    """Two parts: the real loading and inference code on random weights (does the install work?),
    then the analysis, clip-la, clip-pm and the report on simulated logits shaped like the real
    models'."""
    demo_out = Path(args.out) / "demo"
    check_install(args, demo_out / "install-check")
    analyse_simulated_runs(args, demo_out)
    print(f"DEMO done: install check in {demo_out / 'install-check'}; {SIMULATED} runs and report "
          f"in {demo_out}")


def check_install(args, out_dir):
    """clip and debiaspl through the real CLI, on random weights in the real file formats and a
    few generated images."""
    import synthetic
    print(f"DEMO 1/2, install check: random weights in the real file formats on {DEMO_IMAGES_PER_CLASS} "
          f"generated images in each of {DEMO_CLASSES} ImageNet100 classes (so expect a warning that "
          f"the folder is not the standard ImageNet100), through the real loading and inference "
          f"code into {out_dir}.")
    with tempfile.TemporaryDirectory(prefix="debiaspl-demo-") as scratch:
        files = synthetic.write_demo_inputs(Path(scratch), synthetic.imagenet100_wnids()[:DEMO_CLASSES],
                                            DEMO_IMAGES_PER_CLASS)
        common = ["--data", str(files.data), "--out", str(out_dir), "--device", args.device,
                  "--batch-size", str(args.batch_size)]
        common += [] if args.workers is None else ["--workers", str(args.workers)]
        run(build_parser().parse_args(["--model", "clip", "--clip-weights", str(files.clip_weights),
                                       "--prompts", "single", *common]))
        run(build_parser().parse_args(["--model", "debiaspl", "--checkpoint",
                                       str(files.debiaspl_checkpoint), *common]))


def analyse_simulated_runs(args, out_dir):
    """Simulated clip and DebiasPL caches (simulation.py), then what a real run does with them:
    the analysis from cache, clip-la, clip-pm and the report."""
    import simulation
    print(f"DEMO 2/2: {SIMULATED} logits shaped like real CLIP RN50 and DebiasPL runs on "
          f"ImageNet100 (see simulation.py); their analysis, clip-la, clip-pm and the report into "
          f"{out_dir}.")
    for model, predictions in simulation.simulated_predictions().items():
        save_predictions(Path(out_dir) / model / "predictions.npz", predictions)
    for model in ("clip", "debiaspl"):
        run(build_parser().parse_args(["--model", model, "--from-cache", "--out", str(out_dir)]))
    for model in (LOGIT_ADJUSTED_MODEL, PRIOR_MATCHED_MODEL):
        run(build_parser().parse_args(["--model", model, "--out", str(out_dir)]))
    write_report(out_dir, args)
    write_explorer(out_dir, args)


def write_report(out_dir, args):
    import report
    for path in report.write_report(out_dir, name=args.name, student_id=args.student_id,
                                    appendix=args.appendix):
        print(f"wrote {path}")


def write_bundle(out_dir):
    """OUT/code.zip, and what went into it, folder by folder."""
    import bundle
    path, files = bundle.write_bundle(out_dir)
    print(f"wrote {path} ({len(files)} files, {path.stat().st_size / 1024:.0f} KB):")
    folders = {}
    for file in files:
        folders.setdefault(file.parent.as_posix(), []).append(file.name)
    for folder, names in folders.items():
        print(f"  {bundle.FOLDER_IN_ZIP}/{'' if folder == '.' else folder + '/'}: {', '.join(names)}")


def write_explorer(out_dir, args):
    """OUT/explorer.html. Under --report or --demo, a folder it cannot show is a warning: the
    report, which is handed in, stands without it."""
    import explorer  # plotly loads only when the page is written
    try:
        print(f"wrote {explorer.write_explorer(out_dir, args.thumbnails)}")
    except UserError as error:
        if args.explore:
            raise
        print(f"warning: no {EXPLORER_FILE} written: {error}", file=sys.stderr)


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not (args.demo or args.model or args.report or args.explore or args.bundle):
        parser.error(f"choose --model {'|'.join(MODEL_TITLES)}, --demo, --report, --explore or --bundle")
    if args.thumbnails < 0:
        parser.error("--thumbnails must be at least 0")
    if args.batch_size < 1 or (args.workers or 0) < 0 or args.la_passes < 1 or (args.threads or 1) < 1:
        parser.error("--batch-size, --la-passes and --threads must be at least 1, --workers at least 0")
    if args.chunk_size is not None and (args.chunk_size < 1 or args.chunk_size % args.batch_size):
        parser.error(f"--chunk-size must be a multiple of --batch-size ({args.batch_size}), so that "
                     "a chunk's batches are the same in every process")
    main_process = current_place().is_main
    if not main_process and (args.demo or args.from_cache or args.model not in ("clip", "debiaspl")):
        return 0  # under torchrun, only model inference is shared out; the rest is the first process's
    try:
        terminate_as_interrupt()
        with figure_processes():
            if args.demo:
                run_demo(args)  # its report included
            elif args.model:
                run(args)
            if args.report and not args.demo and main_process:
                write_report(split_out_dir(args.out, chosen_split(args)), args)
            if (args.report or args.explore) and not args.demo and main_process:
                write_explorer(split_out_dir(args.out, chosen_split(args)), args)
            if args.bundle and main_process:
                write_bundle(Path(args.out))
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: outputs already written are complete; nothing is half-written (a model "
              "run goes on from its finished chunks when the same command runs again).",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
