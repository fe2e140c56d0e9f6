"""The command line of starter.py: its options, their help, and the checks argparse cannot make.

stdlib and the metadata of the stages it configures only: `python starter.py --help` answers
without torch.
"""
import argparse
import difflib
import os
from datetime import date
from pathlib import Path

import numpy as np

from sources import classes, samples
from explorer import DEFAULT_THUMBNAILS, EXPLORER_FILE
from inference.models import PRECISIONS
from inference.config import DEFAULT_CHUNK_IMAGES
from debias.settings import ConceptAlignmentSettings, LogitAdjustmentSettings
from runs.descriptors import DEFAULT_CLIP_ARCHITECTURE
from runs.kinds import REFERENCE_MODEL, RUN_KINDS, TRAINING_FREE, kind_names
from inference.distributed import DEFAULT_BARRIER_SECONDS

PROJECT_DIR = Path(__file__).resolve().parent.parent
LA_DEFAULTS = LogitAdjustmentSettings()  # clip-la's options' defaults, and --batch-size's
COURSE_DATA_DIR = "/scratch/eecs542f25_class_root/eecs542f25_class/shared_data/imagenet-100"


WORKFLOW = """\
Pseudo-label imbalance of CLIP RN50 and DebiasPL on ImageNet100 (homework 3), and of any
open_clip model on any image-folder dataset (--clip-model, --clip-weights, --data).

The homework in three steps (outputs in OUT, by default ./figures):
  1. python starter.py --model clip       Q1: prints Q1(a)-(c); figures in OUT/clip/
  2. python starter.py --model debiaspl   Q2: prints Q2(a)-(c); figures in OUT/debiaspl/
  3. python starter.py --report --name "Your Name" --student-id 12345678
                                          OUT/report.pdf to hand in (5 pages), and --bundle
                                          for OUT/code.zip
Where each answer is: (a) histogram_precision.png and histogram_recall.png, (b)
confusion_matrix.png, (c) the terminal's "answer" lines (the 10 classes and their cosine
vector), all also in report.pdf under Q1(a)...Q2(c).
No weights or data yet? python starter.py --demo runs it all on SIMULATED logits into OUT/demo/.
"""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The workflow kept as written, and a default shown only where one is set and the help does
    not already say it (flags and unset options have none worth printing)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if (action.default in (None, False, "", argparse.SUPPRESS) or action.nargs == 0
                or "default" in text):
            return text
        return f"{text} (default: %(default)s)"


WHERE_OPTIONS = ("data", "split", "out")


class OneLineErrorParser(argparse.ArgumentParser):
    """Usage errors in one line that says where the help is, not the 15-line usage dump."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}; see `python {self.prog} --help`.\n")

    def parse_args(self, args=None, namespace=None):
        """The options, and `where`: those that say where this command's data and outputs are
        (--data, --split, --out when not the defaults), for the commands a message suggests. An
        unknown option is named with its nearest valid one."""
        parsed, unknown = self.parse_known_args(args, namespace)
        if unknown:
            self.error(f"unrecognized arguments: {' '.join(unknown)}{self.nearest_options(unknown)}")
        parsed.where = [word for option in WHERE_OPTIONS
                        if getattr(parsed, option) not in (None, self.get_default(option))
                        for word in (f"--{option}", str(getattr(parsed, option)))]
        return parsed


    def nearest_options(self, unknown):
        """' (did you mean --student-id?)' for the unknown words that look like a mistyped
        option, '' when none does."""
        valid = [option for action in self._actions for option in action.option_strings]
        nearest = [match[0] for word in unknown if word.startswith("-")
                   for match in [difflib.get_close_matches(word.split("=")[0], valid, n=1, cutoff=0.6)]
                   if match]
        return f" (did you mean {' and '.join(dict.fromkeys(nearest))}?)" if nearest else ""


def model_choice(text):
    """argparse type of --model: one of the runs this tool makes, with the nearest named on a
    typo."""
    if text in RUN_KINDS:
        return text
    nearest = difflib.get_close_matches(text, kind_names(), n=1, cutoff=0.4)
    hint = f"did you mean --model {nearest[0]}? " if nearest else ""
    raise argparse.ArgumentTypeError(f"{text!r} is not a model this tool runs; {hint}"
                                     f"(choose from {', '.join(kind_names())})")


def model_help():
    """--model's help: every registered kind with what it is."""
    training_free = kind_names(TRAINING_FREE)
    return ("which run to make: " + "; ".join(f"{name} ({kind.help})" for name, kind in RUN_KINDS.items())
            + (f". {', '.join(training_free)} take --source RUN, clip by default" if training_free else ""))


def build_parser():
    parser = OneLineErrorParser(
        prog="starter.py", description=WORKFLOW, formatter_class=HelpFormatter,
        usage="python %(prog)s (--model MODEL | --demo | --report | --explore | --bundle) [options]")
    parser.add_argument("--model", type=model_choice, metavar="{" + ",".join(kind_names()) + "}",
                        help=model_help())
    parser.add_argument("--demo", action="store_true",
                        help="check the install (random weights in the real file formats on a few "
                             "generated images, into OUT/demo/install-check/), then analyse "
                             "SIMULATED clip and debiaspl runs shaped like the real ones, with "
                             "clip-la, clip-pm and the report, into OUT/demo/")
    parser.add_argument("--verbose", action="store_true",
                        help="--demo: print every run's full analysis, as --model does, instead of "
                             "one line per run")
    parser.add_argument("--title-note", metavar="TEXT",
                        help="--model clip or debiaspl: words added in brackets to the run's titles "
                             "and kept in its cache (e.g. 'random weights', 'epoch 30')")
    parser.add_argument("--data", default=os.environ.get("IMAGENET100_ROOT", COURSE_DATA_DIR),
                        help="dataset root holding val/ (and train/), or a split folder itself; "
                             "the default is $IMAGENET100_ROOT when set, else the course's copy")
    parser.add_argument("--labels", type=Path, metavar="FILE",
                        help="--data is then one flat folder of images, and FILE their labels: a CSV "
                             "of file name and label (Kaggle's LOC_val_solution.csv) or one label a "
                             "line in the images' sorted order (the devkit's ground truth, with its "
                             "meta.mat beside it); see docs/data-layouts.md for shards and parquet")
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
                             "homework's runs already in OUT, and OUT/study.pdf, study.md, runs.csv "
                             "and classes.csv over every run in OUT (after --model's run when both "
                             "are given; --demo always writes its own)")
    parser.add_argument("--explore", action="store_true",
                        help=f"write OUT/{EXPLORER_FILE} alone from the runs already in OUT: one "
                             "interactive page that opens offline (--report and --demo write it "
                             "too)")
    parser.add_argument("--thumbnails", type=int, default=DEFAULT_THUMBNAILS, metavar="N",
                        help=f"images embedded in {EXPLORER_FILE} per confusion cell, the most "
                             "confident first, where a run's image folder is readable (0: none)")
    handed_in = parser.add_argument_group("report (--report, --demo)")
    handed_in.add_argument("--name",
                           help="your name at the top of report.pdf; remembered in "
                                "OUT/hand-in.json for later reports (else a line to write on)")
    handed_in.add_argument("--student-id",
                           help="your student ID at the top of report.pdf; remembered like --name")
    handed_in.add_argument("--date", type=submission_date, metavar="YYYY-MM-DD",
                           help="the date of submission at the top of report.pdf; remembered like "
                                "--name (else today)")
    handed_in.add_argument("--notes", type=Path, metavar="FILE",
                           help="your own statement (plain text or Markdown) of anything that may "
                                "be wrong, printed on report.pdf's last page under the homework's "
                                "heading for it; remembered like --name")
    handed_in.add_argument("--bundle", action="store_true",
                           help="write OUT/code.zip, the code ZIP the homework asks for: this "
                                "tool's source, README, requirements and tests in one folder, "
                                "never weights, caches, figures or data")
    handed_in.add_argument("--appendix", action="store_true",
                           help="add the per-class tables, clip-la's prior and the other runs' "
                                "figures as an appendix")
    runs = parser.add_argument_group(
        "run folders",
        "clip (RN50), debiaspl, clip-la, clip-pm and clip-ca write to OUT/<model>/; another CLIP "
        "writes to OUT/clip-<model>-<weights>/, on a dataset whose classes are not ImageNet's to "
        "OUT/<dataset>-clip-.../, and a training-free run on another source to OUT/<source>-la/ "
        "(-pm, -ca): the homework's runs are never overwritten")
    runs.add_argument("--run-name", metavar="NAME",
                      help="the run's folder under OUT instead of the default above")
    runs.add_argument("--source", metavar="RUN", default=REFERENCE_MODEL,
                      help="clip-la, clip-pm, clip-ca: the run folder under OUT whose cache they "
                           "debias (clip-ca: a CLIP run that kept its features)")
    clip = parser.add_argument_group("CLIP (--model clip)")
    clip.add_argument("--clip-model", default=DEFAULT_CLIP_ARCHITECTURE, metavar="NAME",
                      help="any of open_clip.list_models(): RN50 (the homework's), ViT-B-32, "
                           "ViT-B-16, ViT-L-14, ...")
    clip.add_argument("--clip-weights", default="openai",
                      help="an open_clip pretrained tag of --clip-model (openai, "
                           "laion2b_s34b_b79k, ...: open_clip.list_pretrained() lists them; "
                           "downloaded by open_clip) or a local file: OpenAI's TorchScript .pt "
                           "(RN50.pt), an open_clip state dict (.pt, .pth, .bin) or a .safetensors "
                           "file")
    clip.add_argument("--prompts", choices=("ensemble", "single"), default="ensemble",
                      help="ensemble: the dataset's templates file (--templates, else "
                           f"{classes.TEMPLATES_FILE} in the dataset), else OpenAI's 80 ImageNet "
                           f"templates for ImageNet classes and {classes.SINGLE_TEMPLATE!r} "
                           f"otherwise; single: exactly {classes.SINGLE_TEMPLATE!r}")
    clip.add_argument("--templates", type=Path, metavar="FILE",
                      help="prompt templates, one per line with {c} for the class name "
                           f"(CLIP_benchmark's {classes.TEMPLATES_FILE} format)")
    clip.add_argument("--rescore", metavar="RUN",
                      help="re-predict the CLIP run RUN's cached image features (its folder under "
                           "OUT) with this command's --templates or --prompts single and "
                           "--class-names-file or --class-names, without reading an image, into "
                           "OUT/RUN-rescored (or --run-name): CLIP's text encoder is the whole cost")
    clip.add_argument("--no-features", action="store_true",
                      help="keep only the logits in the cache, not CLIP's image embeddings [N, D] "
                           "and class text embeddings [K, D] (image_features, text_features; "
                           "D = 1,024 for RN50: 4 KB an image, 5 GB for ImageNet-1k's training "
                           "set)")
    clip.add_argument("--class-names", choices=sorted(classes.CLASS_NAME_COLUMNS), default="openai",
                      help="for ImageNet classes, the names in CLIP's prompts, figures and tables: "
                           "openai (CLIP's curated names, its published protocol) or wordnet (each "
                           "wnid's first WordNet lemma, as the course's starter code uses); "
                           "debiaspl uses them for display only")
    clip.add_argument("--class-names-file", type=Path, metavar="FILE",
                      help=f"class names, one per line in sorted class-folder order (CLIP_benchmark's "
                           f"{classes.CLASS_NAMES_FILE} format); the default is "
                           f"{classes.CLASS_NAMES_FILE} in the dataset when it has one, else the "
                           "ImageNet tables for ImageNet wnids, else the folder names")
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
    inference.add_argument("--batch-size", type=int, default=LA_DEFAULTS.batch_size,
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
    inference.add_argument("--chunk-wait", type=positive_seconds, metavar="SECONDS",
                           help="under torchrun: how long the main process waits for a new part "
                                "of the others once its own chunks are done, before it names the "
                                "missing chunks and stops; the default is 3 x its slowest chunk, "
                                "at least 60 s")
    inference.add_argument("--barrier-timeout", type=positive_seconds, metavar="SECONDS",
                           default=DEFAULT_BARRIER_SECONDS,
                           help="under torchrun: how long a process waits for the others to "
                                "start and at a barrier (the first waits for the main process's "
                                "model build) before it stops")
    inference.add_argument("--skip-bad-images", action="store_true",
                           help="evaluate the images that can be read and list the unreadable ones "
                                "in metrics.json under 'skipped'; without it, unreadable images stop "
                                "the run and are named")
    adjustment = parser.add_argument_group(
        "logit adjustment (--model clip-la)",
        "clip's cached logits s become s − λ·log p̂, where p̂ starts uniform and, over batches of "
        "--batch-size images in a seeded random order, p̂ ← m·p̂ + (1 − m)·(mean softmax "
        "probability, before debiasing, of the batch's images whose top probability is ≥ τ).")
    adjustment.add_argument("--la-momentum", type=unit_interval, default=LA_DEFAULTS.momentum, metavar="m",
                            help="moving-average momentum m of p̂ (DebiasPL's zero-shot script "
                                 "uses qhat_m 0.99)")
    adjustment.add_argument("--la-threshold", type=unit_interval, default=LA_DEFAULTS.threshold, metavar="τ",
                            help="confidence threshold τ: only images whose top softmax probability "
                                 "is ≥ τ enter a batch's mean; a batch with none leaves p̂ unchanged")
    adjustment.add_argument("--la-lambda", type=finite_float, default=LA_DEFAULTS.strength, metavar="λ",
                            help="adjustment strength λ in s − λ·log p̂ (0 leaves clip unchanged; "
                                 "la_sweep.png shows λ from 0 to 2)")
    adjustment.add_argument("--la-mode", choices=("final", "online"), default=LA_DEFAULTS.mode,
                            help="final: every image debiased with p̂ after the last batch; online: "
                                 "each batch debiased with p̂ as it is before that batch's update, as "
                                 "DebiasPL debiases its pseudo-labels (so the first batch keeps "
                                 "clip's predictions)")
    adjustment.add_argument("--la-seed", type=int, default=LA_DEFAULTS.seed,
                            help="seed of the random image order the batches are drawn in (the cache "
                                 "is sorted by class: unshuffled batches would hold one class each)")
    adjustment.add_argument("--la-passes", type=int, default=LA_DEFAULTS.passes,
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
    alignment.add_argument("--ca-seed", type=int, default=ConceptAlignmentSettings.seed,
                           help="seed of Algorithm 1's K-means (and of its sample)")
    alignment.add_argument("--ca-names", type=Path, metavar="FILE",
                           help="alternative names to choose from, beside ImageNet classes' "
                                "WordNet lemmas (the only ones for other datasets): a JSON object "
                                '{"class folder or class name": ["name", ...]}')
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


def submission_date(text):
    """argparse type: a calendar date written YYYY-MM-DD."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date written YYYY-MM-DD") from None


def positive_seconds(text):
    """argparse type: a number of seconds above 0."""
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not a number of seconds above 0")
    return value


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


def missing_data_folder(args):
    """Why --data names no folder, with the fix for where its value came from; None when it is
    one."""
    data = Path(args.data).expanduser()
    if data.is_dir() or samples.is_shard_pattern(args.data):
        return None
    if "--data" in args.where:
        return f"the data folder {data} (--data) does not exist; check the path."
    if os.environ.get("IMAGENET100_ROOT"):
        return (f"the data folder {data} ($IMAGENET100_ROOT) does not exist; set IMAGENET100_ROOT "
                "to your ImageNet100 root (the folder holding val/), or pass --data PATH.")
    return (f"the course's ImageNet100 copy {data} is not on this machine (it is on the course's "
            "cluster); pass --data PATH to your ImageNet100 root (the folder holding val/) or set "
            "IMAGENET100_ROOT, or try `python starter.py --demo`, which needs no data.")


def for_reports(args):
    return bool(args.report or args.demo)


# The options that mean something only in some modes: {option's dest: (those modes in words,
# whether this command is one)}. Given elsewhere, they are named in a note rather than ignored
# in silence.
MODE_OPTIONS = {
    **dict.fromkeys(("name", "student_id", "date", "notes", "appendix"),
                    ("--report or --demo", for_reports)),
    "thumbnails": ("--report, --explore or --demo", lambda args: for_reports(args) or args.explore),
    "from_cache": ("--model", lambda args: bool(args.model)),
    "verbose": ("--demo", lambda args: args.demo),
}


def kind_options():
    """{option's dest: the run kinds that take it}, from the registry (RunKind.options)."""
    taking = {}
    for name, kind in RUN_KINDS.items():
        for dest in kind.options:
            taking.setdefault(dest, []).append(name)
    return taking


def or_list(names):
    return ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]


def unused_option_notes(parser, args):
    """One note for each option given that this command does not use: those of other modes
    (MODE_OPTIONS) and those of other run kinds (the registry's RunKind.options)."""
    unused = [(dest, modes) for dest, (modes, applies) in MODE_OPTIONS.items() if not applies(args)]
    unused += [(dest, "--model " + or_list(kinds)) for dest, kinds in kind_options().items()
               if args.model not in kinds]
    return [f"note: --{dest.replace('_', '-')} applies to {modes} only; it is not used here."
            for dest, modes in unused if getattr(args, dest) != parser.get_default(dest)]
