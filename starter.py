#!/usr/bin/env python3
"""How imbalanced are CLIP's pseudo-labels, and what does debiasing do to them?

Runs OpenAI's CLIP RN50 zero-shot (`--model clip`) or the DebiasPL zero-shot checkpoint
(`--model debiaspl`) over an ImageNet(100) validation folder and writes, under OUT/<model>/,
the cached logits, per-class metrics, the ordered histograms (Q1a/Q2a), the confusion matrix
(Q1b/Q2b), the centroid neighbours (Q1c/Q2c) of homework 3 and which pseudo-labels a
semi-supervised learner would select. `--model clip-la`, `clip-pm` and `clip-ca` run no model:
they debias a run's cached logits (or rename its concept-mismatched classes) without training.
Any open_clip model (`--clip-model`, `--clip-weights`) on any image-folder dataset (`--data`,
its classnames.txt and templates file) gets a run folder of its own (runs.py).

    python starter.py --model clip
    python starter.py --model debiaspl
    python starter.py --model clip-la   # after clip
    python starter.py --model clip-pm   # after clip
    python starter.py --demo            # install check, then SIMULATED runs through it all
    python starter.py --report          # OUT/report.pdf and report.md from the runs in OUT
    python starter.py --explore         # OUT/explorer.html alone (--report and --demo write it too)

The options live in options.py. torch, torchvision and open_clip are imported only when
inference runs, so `--from-cache` redoes every figure and number from predictions.npz in seconds.
"""
import contextlib
import io
import sys
import tempfile
import time
from pathlib import Path

from analysis import run_analysis, terminal_text
from analysis.figure_workers import Terminated, figure_processes, terminate_as_interrupt
from cli.commands import Commands, for_out
from cli.messages import explain
from cli.options import build_parser, missing_data_folder, unused_option_notes
from cli.settings import derived_run_settings, execution_settings, inference_config
from explorer import EXPLORER_FILE
from inference import models, rescore
from inference.distributed import current_place, exit_at_once, follow_launcher
from runs.cache import load_predictions, save_predictions
from runs.descriptors import SIMULATED, default_run_name, find_runs, split_out_dir, write_descriptor
from runs.kinds import (CHECKPOINT, LOGIT_ADJUSTED_MODEL, MODEL_NATURES, PRIOR_MATCHED_MODEL, REFERENCE_MODEL,
                        TRAINING_FREE, ZERO_SHOT_CLIP, homework_questions, kind_names, run_kind)
from runs import lock
from runs.outputs import UserError, plural
from sources import classes, samples

# The demo's install check: real code and random weights on a few classes (CLIP's text encoder
# costs ~0.25 s per class name on a CPU) and images.
DEMO_CLASSES = 5
DEMO_IMAGES_PER_CLASS = 2
RANDOM_WEIGHTS = "random weights"  # the install check's --title-note


def chosen_split(args):
    """The run's split: --split, else the one --data names (its val folder, or a split folder
    given directly); val when --data is not on this machine (a run from cache)."""
    if args.split or args.labels or not Path(args.data).expanduser().is_dir():
        return args.split or classes.SPLITS[0]
    return classes.resolve_split_dir(args.data)[0]


def cache_differences(meta, args, split):
    """How the options of this --from-cache run differ from those that made the cache."""
    differences = inference_config(args, split).differences(meta)
    weights_option = {"clip": "clip_weights", "debiaspl": "checkpoint"}.get(meta["model"])
    cached_file = meta.get("weights_identity", {}).get("path")
    if weights_option and cached_file:
        weights = Path(str(getattr(args, weights_option))).expanduser()
        if weights.is_file() and (str(weights.resolve()) != cached_file
                                  or weights.stat().st_size != meta["weights_identity"]["bytes"]):
            differences.append(f"the weights {cached_file}, not {weights}")
    if meta.get("file_list_sha256") and not missing_data_folder(args):
        source = open_source(args, split)
        if source.fingerprint() != meta["file_list_sha256"]:
            differences.append(f"other image files than {source.location} holds now")
    return differences


def open_source(args, split):
    """--data's samples (sources.sample_source.SampleSource); a shard index is cached in OUT/cache."""
    return samples.open_source(args.data, split, args.labels, Path(args.out) / "cache")[1]


def describe_dataset(args, split):
    """(--data's samples, their classes.DatasetClasses: names and, for clip, the prompt
    templates) for a model run; a folder that is not there stops with its fix."""
    if missing_data_folder(args):
        raise UserError(missing_data_folder(args))
    source = open_source(args, split)
    len(source)  # a folder's images are listed now: a folder without any fails before weights load
    clip = run_kind(args.model).nature == ZERO_SHOT_CLIP
    return source, samples.describe_source(source, args.class_names, args.class_names_file,
                                           args.templates if clip else None,
                                           args.prompts if clip else None)


def run_folder(args, split, described=None):
    """The run's folder: --run-name, else the default for its model, weights, dataset and source
    (runs.default_run_name). The dataset's name counts only when its classes are not ImageNet's;
    it is `described`'s for a model run, else read from --data's class folders when they are on
    this machine (a run from cache)."""
    if args.run_name:
        return args.run_name
    if args.rescore:
        return rescore.default_run_name(args.rescore)
    if run_kind(args.model).nature == TRAINING_FREE:
        return default_run_name(args.model, source=args.source)
    if described is None and not missing_data_folder(args):
        described = samples.describe_source(open_source(args, split), prompts=None)
    dataset = described.dataset if described is not None and described.imagenet_indices is None else None
    clip = run_kind(args.model).nature == ZERO_SHOT_CLIP
    return default_run_name(args.model, args.clip_model if clip else None,
                            args.clip_weights, dataset)


def infer(args, split, source, described, out_dir, run_dir):
    """A model run over the source's images (`described`, from describe_dataset) into
    RUN/predictions.npz: its Predictions, None in the other processes of a torchrun job. A wrong
    setup (no clip run for debiaspl, a dataset a checkpoint cannot predict, an unknown CLIP model
    or weights) stops before any model loads."""
    kind = run_kind(args.model)
    if kind.nature == CHECKPOINT and described.imagenet_indices is None:
        raise UserError(f"--model {args.model} predicts ImageNet-1k's 1,000 classes, but the classes "
                        f"of {source.location} ({described.folders[0]}, ...) are not ImageNet "
                        f"wnids; run --model {REFERENCE_MODEL} on this dataset instead.")
    run_analysis.reference_ranking(out_dir, args.model, list(described.folders))
    if kind.nature == ZERO_SHOT_CLIP:
        models.check_clip_choice(args.clip_model, args.clip_weights, args.trust_checkpoint)
    return kind.make(inference_config(args, split, described), execution_settings(args), described,
                     source, run_dir)


def run(args):
    """Make or read the --model run and analyse it: (the terminal's text of its answers, its
    metrics.json summary, its folder); None in the other processes of a torchrun job."""
    split = chosen_split(args)
    out_dir = split_out_dir(args.out, split)
    kind = run_kind(args.model)
    model_run = not (args.from_cache or args.rescore) and kind.nature in MODEL_NATURES
    samples, described = describe_dataset(args, split) if model_run else (None, None)
    run_dir = out_dir / run_folder(args, split, described)
    # One job writes a run folder; a run made from another run's cache reads that one's
    # (runs/lock.py).
    reads = [out_dir / args.source] if kind.nature == TRAINING_FREE and not args.from_cache else []
    reads += [out_dir / args.rescore] if args.rescore and not args.from_cache else []
    with lock.hold(writes=[run_dir], reads=reads, enabled=current_place().is_main):
        return make_and_analyse(args, kind, split, out_dir, run_dir, samples, described)


def make_and_analyse(args, kind, split, out_dir, run_dir, samples, described):
    """run()'s work in the run folder, whose lock it holds; `samples` and `described` those of
    describe_dataset for a model run."""
    cache = run_dir / "predictions.npz"
    if args.from_cache:
        others = [run_id for run_id, descriptor in find_runs(out_dir).items()
                  if descriptor["model"] == args.model and run_id != run_dir.name]
        if others and not cache.is_file():
            raise UserError(f"there is no cache at {cache}, but {out_dir} holds other --model "
                            f"{args.model} runs: pass --run-name {others[0]}"
                            + (f" (or one of {', '.join(others[1:])})" if others[1:] else "") + ".")
        predictions = load_predictions(cache)
        for difference in cache_differences(predictions.meta, args, split):
            print(f"note: {cache} was made with {difference}; its results are shown as cached.",
                  file=sys.stderr)
        classes.warn_if_not_imagenet100([str(wnid) for wnid in predictions.wnids])
    elif kind.nature == TRAINING_FREE:
        predictions = kind.make(derived_run_settings(args), out_dir, run_dir)  # cached by it
    elif args.rescore:
        predictions = rescore.rescore(args.rescore, out_dir, run_dir, args.templates, args.prompts,
                                      args.class_names_file, args.class_names, args.device,
                                      args.trust_checkpoint)
    else:
        predictions = infer(args, split, samples, described, out_dir, run_dir)
        if predictions is None:  # another process of a torchrun job: the main one analyses
            return None
    write_descriptor(run_dir, predictions.meta)
    summary, centroids, selection = run_analysis.analyze(predictions, run_dir, out_dir)
    return terminal_text.format_report(summary, centroids, selection), summary, run_dir


def print_run(args):
    """run(args), its answers printed."""
    analysed = run(args)
    if analysed:
        text, _, run_dir = analysed
        print(f"{text}\noutputs in {run_dir}")


def run_briefly(argv, verbose):
    """run() of a demo step, quiet unless `verbose`: what it printed is held back, and shown only
    when it fails. Returns (its metrics.json summary, its folder, seconds taken)."""
    start = time.perf_counter()
    held = io.StringIO()
    try:
        with contextlib.redirect_stdout(held), contextlib.redirect_stderr(held):
            text, summary, run_dir = run(build_parser().parse_args(argv))
    except BaseException:
        sys.stderr.write(held.getvalue())
        raise
    if verbose:
        print(f"{held.getvalue()}{text}")
    return summary, run_dir, time.perf_counter() - start


def run_demo(args):
    """Two parts: the real loading and inference code on random weights (does the install work?),
    then the analysis, clip-la, clip-pm and the report on simulated logits shaped like the real
    models'."""
    demo_out = Path(args.out) / "demo"
    check_install(args, demo_out / "install-check")
    analyse_simulated_runs(args, demo_out)
    commands = for_out(demo_out)
    print(f"DEMO done: open {demo_out / 'report.pdf'} (and {demo_out / 'study.pdf'}, every run side "
          f"by side). These print each question's answers as a real run does ({SIMULATED} here):")
    for model, question in homework_questions().items():
        print(f"  {question}: {commands.run(model, from_cache=True)}")


def check_install(args, out_dir):
    """clip and debiaspl through the real CLI, on random weights in the real file formats and a
    few generated images: one line each."""
    from demo import synthetic
    print(f"DEMO 1/2, install check: the real loading and inference code on random weights in the "
          f"real file formats and {DEMO_CLASSES * DEMO_IMAGES_PER_CLASS} generated images, into "
          f"{out_dir} (--verbose shows the analyses)")
    with tempfile.TemporaryDirectory(prefix="debiaspl-demo-") as scratch:
        files = synthetic.write_demo_inputs(Path(scratch), synthetic.imagenet100_wnids()[:DEMO_CLASSES],
                                            DEMO_IMAGES_PER_CLASS)
        common = ["--data", str(files.data), "--out", str(out_dir), "--device", args.device,
                  "--batch-size", str(args.batch_size), "--title-note", RANDOM_WEIGHTS]
        common += [] if args.workers is None else ["--workers", str(args.workers)]
        for model, weights in (("clip", ["--clip-weights", str(files.clip_weights), "--prompts", "single"]),
                               ("debiaspl", ["--checkpoint", str(files.debiaspl_checkpoint)])):
            summary, run_dir, seconds = run_briefly(["--model", model, *weights, *common], args.verbose)
            print(f"install check: {model} OK, {plural(summary['num_images'], 'image')}, "
                  f"{RANDOM_WEIGHTS}, {seconds:.1f} s; outputs in {run_dir}")


def analyse_simulated_runs(args, out_dir):
    """Simulated clip and DebiasPL caches (simulation.py), then what a real run does with them:
    the analysis from cache, clip-la, clip-pm and the report."""
    from demo import simulation
    print(f"DEMO 2/2: {SIMULATED} logits shaped like real CLIP RN50 and DebiasPL runs on "
          f"ImageNet100 (see simulation.py); their analysis, clip-la, clip-pm and the report into "
          f"{out_dir}.")
    for model, predictions in simulation.simulated_predictions().items():
        save_predictions(Path(out_dir) / model / "predictions.npz", predictions)
    for model, options in (("clip", ["--from-cache"]), ("debiaspl", ["--from-cache"]),
                           (LOGIT_ADJUSTED_MODEL, []), (PRIOR_MATCHED_MODEL, [])):
        summary, run_dir, seconds = run_briefly(["--model", model, *options, "--out", str(out_dir)],
                                                args.verbose)
        print(f"{SIMULATED} {model}: accuracy {summary['accuracy']:.3f}, balanced accuracy "
              f"{summary['balanced_accuracy']:.3f}, {seconds:.1f} s; outputs in {run_dir}")
    write_report(out_dir, args)
    write_explorer(out_dir, args)


def write_report(out_dir, args):
    if not any(out_dir.glob("*/metrics.json")) and any((out_dir / "demo").glob("*/metrics.json")):
        raise UserError(f"{out_dir} holds no analysed run, but the demo's are in {out_dir / 'demo'}: "
                        f"run `{for_out(out_dir / 'demo').report()}` to report on "
                        f"them, or `{Commands(tuple(args.where)).first_run()}` first.")
    import report
    import study
    written = report.write_report(out_dir, for_out(out_dir), name=args.name,
                                  student_id=args.student_id, date=args.date, notes=args.notes,
                                  appendix=args.appendix)
    if not written:
        print(f"note: no report.pdf: {out_dir} holds none of the homework's runs "
              f"(`{Commands(tuple(args.where)).first_run()}` for Q1); the study covers its runs",
              file=sys.stderr)
    for path in (*written, *study.write_study(out_dir, for_out(out_dir))):
        print(f"wrote {path}")


def write_bundle(out_dir):
    """OUT/code.zip, and what went into it, folder by folder."""
    from report import bundle
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
        print(f"wrote {explorer.write_explorer(out_dir, for_out(out_dir), args.thumbnails)}")
    except UserError as error:
        if args.explore:
            raise
        print(f"warning: no {EXPLORER_FILE} written: {error}", file=sys.stderr)


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not (args.demo or args.model or args.report or args.explore or args.bundle):
        parser.error(f"choose --model {'|'.join(kind_names())}, --demo, --report, --explore or --bundle")
    if args.thumbnails < 0:
        parser.error("--thumbnails must be at least 0")
    if args.batch_size < 1 or (args.workers or 0) < 0 or args.la_passes < 1 or (args.threads or 1) < 1:
        parser.error("--batch-size, --la-passes and --threads must be at least 1, --workers at least 0")
    if args.chunk_size is not None and (args.chunk_size < 1 or args.chunk_size % args.batch_size):
        parser.error(f"--chunk-size must be a multiple of --batch-size ({args.batch_size}), so that "
                     "a chunk's batches are the same in every process")
    follow_launcher(current_place())  # under torchrun: end with torchrun's agent, however it ends
    main_process = current_place().is_main
    if main_process:
        for note in unused_option_notes(parser, args):
            print(note, file=sys.stderr)
    if not main_process and (args.demo or args.from_cache or args.rescore
                             or run_kind(args.model).nature not in MODEL_NATURES):
        return 0  # under torchrun, only model inference is shared out; the rest is the first process's
    try:
        terminate_as_interrupt()
        with figure_processes():
            if args.demo:
                run_demo(args)  # its report included
            elif args.model:
                print_run(args)
            if (args.report or args.explore) and not args.demo and main_process:
                out_dir = split_out_dir(args.out, chosen_split(args))
                with lock.hold(writes=[out_dir / "report"], reads=[out_dir / run for run in find_runs(out_dir)]):
                    if args.report:
                        write_report(out_dir, args)
                    write_explorer(out_dir, args)
            if args.bundle and main_process:
                write_bundle(Path(args.out))
    except UserError as error:
        print(f"error: {explain(error, Commands(tuple(args.where)))}", file=sys.stderr)
        exit_at_once(current_place(), 2)
        return 2
    except KeyboardInterrupt as interrupt:
        if main_process:  # one line for the job
            print("interrupted: outputs already written are complete; nothing is half-written (a "
                  "model run goes on from its finished chunks when the same command runs again).",
                  file=sys.stderr)
        code = 143 if isinstance(interrupt, Terminated) else 130  # 128 + SIGTERM's or SIGINT's number
        exit_at_once(current_place(), code)
        return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
