"""The study as data: Sections of report.content's Text, Table and Image blocks, which the report's
renderers write as study.pdf and study.md. Runs are numbered in the study's order (#1, #2, ...),
so that the figures' points and the heat maps' columns name them briefly."""
import numpy as np

from report.content import Image, Section, Table, Text, format_number
from report.questions import HISTOGRAM_FIGURES, figure_blocks, top_confusion_table
from report.why_section import concept_blocks, figure4_table
from runs.descriptors import SIMULATED
from runs.kinds import CONCEPT_ALIGNED_MODEL
from runs.outputs import plural

from .table import method_changes, run_tables
from .tidy import CLASSES_FILE, RUNS_FILE

IMBALANCE_FIGURE = "study-imbalance.png"
LISTED_CLASSES = 15  # rows of a table of shared classes; classes.csv has every class
TOP_CONFUSIONS = 5  # a run's largest confusions, in brief
LABEL_CHARACTERS = 32  # a heat map's row label, at most


def agreement_figure_name(agreement):
    return f"study-agreement-{agreement.reference}.png"


def run_label(number, run_id, limit=None):
    """"#3 clip-la"; past `limit` characters, cut in the middle with an ellipsis, since run names
    often differ only at their ends."""
    label = f"#{number} {run_id}"
    if limit is None or len(label) <= limit:
        return label
    head = (limit - 1) // 3
    return f"{label[:head]}…{label[len(label) - (limit - 1 - head):]}"


def study_title(out_dir, numbered):
    return f"Study of {plural(len(numbered), 'run')} in {out_dir}"


def title_section(out_dir, numbered, not_analysed, commands):
    """The first page's top: what the study is, and what is not real or not in it."""
    simulated = [run_label(number, record["run"]) for number, record in numbered.items()
                 if record["simulated"]]
    blocks = [Text(
        "Every analysed run in this folder, side by side: what each run is and how accurately and "
        "how unevenly it predicts; accuracy against imbalance; per dataset, whether the runs "
        "over-predict the same classes; then each run in brief, with the causes of its imbalance "
        f"where its CLIP features were kept. {RUNS_FILE} and {CLASSES_FILE}, beside this file, hold "
        "the same numbers at full precision for pandas or R.")]
    if simulated:
        which = ("Every run comes" if len(simulated) == len(numbered) else
                 f"{', '.join(simulated)} {'comes' if len(simulated) == 1 else 'come'}")
        blocks.append(Text(f"{SIMULATED}: {which} from simulated logits (`{commands.demo()}`, "
                           "the benchmarks), not from a model: they show what the study "
                           "looks like, nothing about the models.", "note"))
    for run in not_analysed:
        cached = (run.directory / "predictions.npz").is_file()
        blocks.append(Text(f"{run.model} is not analysed yet, so not in the study: run "
                           f"`{commands.run(run.model, run.made_by, cached)}`.", "note"))
    return Section(study_title(out_dir, numbered), blocks=blocks)


def runs_section(runs, numbered):
    changes = method_changes(numbered)
    return Section("Runs", "what each run is, its accuracy and its prediction-count imbalance",
                   run_tables(numbered) + [figure4_table(runs)] + ([changes] if changes else []))


def imbalance_section():
    return Section("Accuracy against imbalance", "does a more accurate model predict more evenly?", [
        Image(IMBALANCE_FIGURE, "Accuracy against imbalance, one point per run (its number), "
                                "grouped by dataset; an arrow goes from a run to a training-free run "
                                "made from it", orientation="landscape"),
        Text("A better model that predicts more evenly lies lower to the right; one that is only "
             "more accurate lies to the right at the same height. KL as in the runs table.",
             "note")], new_page=True)


def correlation_text(agreement, numbers):
    """The runs' Spearman ρ in one sentence: the pair's, or the median and extremes of all."""
    pairs = [(agreement.rho[i, j], i, j) for i in range(len(agreement.runs)) for j in range(i)
             if not np.isnan(agreement.rho[i, j])]
    if not pairs:
        return Text("Spearman ρ is undefined for every pair: a run predicts every class equally "
                    "often.", "note")

    def pair(i, j):
        return f"{run_label(numbers[agreement.runs[j]], agreement.runs[j])} and " \
               f"{run_label(numbers[agreement.runs[i]], agreement.runs[i])}"

    if len(agreement.runs) == 2:
        return Text(f"Spearman ρ of the predicted counts per class of {pair(1, 0)}: "
                    f"{format_number(agreement.rho[1, 0], 3)}.")
    (low, *low_pair), (high, *high_pair) = min(pairs), max(pairs)
    return Text(f"Spearman ρ of the predicted counts per class, over the "
                f"{plural(len(pairs), 'pair')} of runs: median "
                f"{format_number(float(np.median([rho for rho, _, _ in pairs])), 3)}, from "
                f"{format_number(low, 3)} ({pair(*low_pair)}) to {format_number(high, 3)} "
                f"({pair(*high_pair)}).")


def shared_table(shared, caption, footer=""):
    rows = [[entry.name, entry.wnid, f"{entry.images:,}",
             f"{entry.fewest:,}" if entry.fewest == entry.most else f"{entry.fewest:,}–{entry.most:,}"]
            for entry in shared[:LISTED_CLASSES]]
    more = len(shared) - LISTED_CLASSES
    return Table(["class", "wnid", "images", "predictions"], rows, caption,
                 "\n".join(filter(None, [footer, f"and {more:,} more: {CLASSES_FILE} has every "
                                                 "class" if more > 0 else ""])), compact=True)


def agreement_blocks(agreement, numbers):
    """One dataset's runs: how alike their predicted counts are, and the classes all over- or
    under-predict."""
    blocks = [Text(f"{agreement.label}: {plural(len(agreement.runs), 'run')}", "subheading")]
    if len(agreement.runs) == 1:
        blocks.append(Text("Only one run on these classes: nothing to compare it with.", "note"))
    else:
        blocks.append(correlation_text(agreement, numbers))
    if len(agreement.runs) > 2:
        blocks.append(Image(agreement_figure_name(agreement), f"Spearman ρ of each two runs' "
                            f"predicted counts per class on {agreement.label}", orientation="portrait"))
    named = len(agreement.model_runs) <= 3  # else by number: the heat map and table name them
    which = ", ".join(run_label(numbers[run], run) if named else f"#{numbers[run]}"
                      for run in agreement.model_runs)
    every = f"the model run ({which})" if len(agreement.model_runs) == 1 else f"every model run ({which})"
    spread = "" if len(agreement.model_runs) == 1 else "predictions: the fewest–most over those runs"
    if agreement.over_predicted:
        blocks.append(shared_table(agreement.over_predicted, f"{plural(len(agreement.over_predicted), 'class')} "
                                   f"over-predicted by {every}: more predictions than images",
                                   "; ".join(filter(None, [spread, "the most over-predicted first"]))))
    else:
        blocks.append(Text(f"No class is over-predicted (more predictions than images) by {every}.", "note"))
    if agreement.never_predicted:
        blocks.append(shared_table(agreement.never_predicted, f"{plural(len(agreement.never_predicted), 'class')} "
                                   f"never predicted by {every}", spread))
    else:
        blocks.append(Text(f"The model run ({which}) predicts every class at least once."
                           if len(agreement.model_runs) == 1 else
                           f"Every class is predicted at least once by one of the model runs ({which}).",
                           "note"))
    return blocks


def agreement_section(agreements, numbers):
    blocks = [Text("ρ near 1: the runs over- and under-predict the same classes, so the imbalance "
                   "lies in the classes (or the data) more than in a model; near 0: each model "
                   "has its own favourites. Training-free runs are in the correlations, not in the "
                   "lists of shared classes, which ask whether the models agree.", "note")]
    for agreement in agreements:
        blocks += agreement_blocks(agreement, numbers)
    return Section("Agreement", "are the same classes over-predicted by every model, on each "
                                "dataset?", blocks, new_page=True)


def figure4_text(claims):
    """Figure 4's claim on a run (metrics.json's figure4_claim), in one line."""
    if not claims:
        return Text("Figure 4's claim: not tested (metrics.json from before the test).", "small")
    parts = []
    for kind in ("literal", "centered"):
        claim = claims[kind]
        parts.append(f"{kind} centroids " + (
            f"undefined (it needs 3 classes with a centroid and other centroids near it, and "
            f"unequal counts; {claim['num_classes']} qualify)"
            if claim["rho"] is None else
            f"ρ = {format_number(claim['rho'], 3)} (p = {claim['p_value']:.2g}, "
            f"{'supported' if claim['supported'] else 'not supported'})"))
    return Text("Figure 4's claim (the less often a class is predicted, the closer its 10 nearest "
                "centroids): " + "; ".join(parts) + ".", "small")


def brief_line(record):
    return Text(f"{record['images']:,} images, {record['classes']:,} classes; accuracy "
                f"{format_number(record['accuracy'])}, balanced accuracy "
                f"{format_number(record['balanced_accuracy'])}; predicted counts from "
                f"{record['max_predicted']:,} down to {record['min_predicted']:,} "
                f"({plural(record['never_predicted'], 'class')} never predicted), Gini "
                f"{format_number(record['gini'], 3)}.", "small")


def causes_blocks(run, diagnosis, mismatched):
    """The CAP paper's causes in a run's CLIP features, or why there are none."""
    if diagnosis and diagnosis.get("concepts"):
        blocks = concept_blocks(run, diagnosis)
        if mismatched is not None:
            names = {entry["wnid"]: entry["name"] for entry in run.metrics["classes"]}
            blocks.append(Text(f"Algorithm 1 ({CONCEPT_ALIGNED_MODEL}) found "
                               f"{plural(len(mismatched), 'class')} concept-mismatched"
                               + (": " + ", ".join(names.get(wnid, wnid) for wnid in mismatched)
                                  if mismatched else "") + ".", "small"))
        return blocks
    if run.descriptor["clip"]:
        return [Text("No concept analysis: the run's cache holds no CLIP image features (made "
                     "with --no-features, or by an older version).", "note")]
    return [Text("Concept mismatch and confusion compare CLIP's text and image embeddings: this "
                 "run has none.", "note")]


def run_section(number, run, record, diagnosis, mismatched, out_dir):
    """One run in brief, on its own page: its histogram, its largest confusions and the causes
    of its imbalance."""
    label = run_label(number, run.model)
    blocks = [brief_line(record)]
    blocks += figure_blocks(run, HISTOGRAM_FIGURES[1:], out_dir, label, orientation="portrait",
                            fit_page=True)  # shrunk where the page would overflow
    blocks += top_confusion_table(run, label, out_dir, TOP_CONFUSIONS)
    blocks += [figure4_text(run.metrics.get("figure4_claim")), *causes_blocks(run, diagnosis, mismatched)]
    return Section(label, run.title, blocks, new_page=True)


def build_sections(out_dir, runs, not_analysed, numbered, agreements, diagnoses, mismatched):
    """The whole study: its first page (what it is, the runs table), accuracy against imbalance,
    whether the same classes are over-predicted, then one page per run."""
    numbers = {record["run"]: number for number, record in numbered.items()}
    sections = [title_section(out_dir, numbered, not_analysed, runs.commands), runs_section(runs, numbered),
                imbalance_section(), agreement_section(agreements, numbers)]
    return sections + [run_section(number, runs[record["run"]], record, diagnoses[record["run"]],
                                   mismatched[record["run"]], out_dir)
                       for number, record in numbered.items()]
