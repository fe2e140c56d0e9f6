"""The homework report, built from the run folders under OUT: OUT/report.pdf and OUT/report.md.

    python starter.py --report [--name "..." --student-id "..."] [--appendix] [--out OUT]

Reads only what `starter.py --model ...` wrote (metrics.json, centroids.json, the PNGs and the
extra files of the training-free runs): no torch, no inference. Building is separate from
rendering: pure functions turn the runs into Sections of Text, Table and Image blocks (tables
hold already formatted cells), then reportlab's platypus lays them out on A4 pages (portrait
for text, landscape for the wide figures) and another renderer writes them as Markdown, so both
documents show the same numbers. OUT/comparison.png is drawn by plotting.comparison_figure.
"""
import re
import shlex
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
from matplotlib import get_data_path
from PIL import Image as PILImage
from reportlab.lib import colors
from reportlab.lib.fonts import addMapping
from reportlab.lib.pagesizes import A4, landscape
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import inch
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.platypus import (BaseDocTemplate, Frame, PageBreak,
                                PageBreakIfNotEmpty, PageTemplate, Paragraph, TableStyle)
from reportlab.platypus import Image as PdfImage
from reportlab.platypus import Table as PdfTable
from reportlab.platypus.doctemplate import ActionFlowable

import analysis
import metrics
import plotting
import pseudo_labels
import why
from outputs import FIGURE_DPI, UserError, read_json, write_atomic, write_figure
from runs import (CONCEPT_ALIGNED_MODEL, MODEL_TITLES, QUESTION_OF_MODEL, REFERENCE_MODEL, SIMULATED,
                  is_simulated)

RUN_MODELS = tuple(MODEL_TITLES)  # report order: the homework's runs, then the training-free ones
# What a training-free run (one beyond the homework's questions) adds to its section: figures
# beside the standard ones, and JSON files shown in the appendix.
EXTRA_RUN_FIGURES = {"clip-la": (("la_sweep.png", "accuracy and balanced accuracy against the "
                                                  "adjustment strength λ"),)}
EXTRA_RUN_FILES = {"clip-la": ("prior.json",), "clip-pm": ("prior.json",)}
PSEUDO_LABEL_FILE = "pseudo_labels.json"
PSEUDO_LABEL_FIGURE = "pseudo_labels.png"
PSEUDO_LABEL_THRESHOLDS = (0.5, 0.9, 0.95, 0.99)  # columns of the pseudo-label table
PSEUDO_LABEL_TOP_K = 16  # the class-balanced top-k column
HISTOGRAM_FIGURES = (("histogram_precision.png", "predictions per class, with precision"),
                     ("histogram_recall.png", "predictions per class, with recall"))
CONFUSION_FIGURE = ("confusion_matrix.png", "confusion matrix, rows and columns most to least "
                                            "predicted")
SUBQUESTION_TOPICS = {"a": "prediction histograms", "b": "confusion matrix",
                      "c": "nearest class centroids"}
COMPARISON_FIGURE = "comparison.png"
NOT_AVAILABLE = "n/a"
CENTERING_NOTE = (
    "Literal: cosine of the classes' mean logit vectors, as the homework asks; these crowd near 1 "
    "because CLIP's logits are 100 × a cosine, so every class scores about 20 to 30 on every image "
    "and that large offset, shared by all logits, dominates every centroid. Centered: the same "
    "after subtracting each image's mean logit over the classes, a shift that leaves the softmax "
    "and every prediction unchanged, so these compare the part of the logits that decides.")


# ---------------------------------------------------------------------------------------------
# Report content as data

@dataclass
class Text:
    text: str
    style: str = "body"  # body | subheading | note


@dataclass
class Table:
    columns: list
    rows: list  # lists of already formatted cells (str)
    caption: str = ""
    footer: str = ""
    compact: bool = False  # small: the PDF may set it beside the next compact tables


@dataclass
class Image:
    path: str  # relative to OUT
    caption: str
    own_page: bool = False


@dataclass
class Section:
    title: str  # e.g. "Q1(a)": what the grader looks for
    subtitle: str = ""
    blocks: list = field(default_factory=list)
    new_page: bool = False


@dataclass
class Run:
    """One OUT/<model> folder; metrics is None until the run has been analysed."""
    model: str
    directory: Path
    metrics: dict = None
    centroids: dict = None
    pseudo_labels: dict = None  # pseudo_labels.json
    files: dict = field(default_factory=dict)  # EXTRA_RUN_FILES read: {file name: JSON}

    @property
    def title(self):
        return MODEL_TITLES.get(self.model, self.model)

    @property
    def simulated(self):
        return self.metrics is not None and is_simulated(self.metrics.get("settings", {}))


def load_runs(out_dir):
    """{model: Run} for every folder among RUN_MODELS that exists under out_dir, in that order."""
    out_dir = Path(out_dir)
    runs = {}
    for model in RUN_MODELS:
        directory = out_dir / model
        if not directory.is_dir():
            continue
        run = Run(model, directory)
        for attribute, name in (("metrics", "metrics.json"), ("centroids", "centroids.json"),
                                ("pseudo_labels", PSEUDO_LABEL_FILE)):
            if (directory / name).is_file():
                setattr(run, attribute, read_json(directory / name, f"{model}'s {name}"))
        run.files = {name: read_json(directory / name, f"{model}'s {name}")
                     for name in EXTRA_RUN_FILES.get(model, ()) if (directory / name).is_file()}
        runs[model] = run
    if not any(run.metrics for run in runs.values()):
        raise UserError(f"{out_dir} holds no analysed run (none of "
                        f"{', '.join(m + '/metrics.json' for m in RUN_MODELS)}); run "
                        f"`python starter.py --model clip --out {shlex.quote(str(out_dir))}` first.")
    return runs


def extra_models(runs):
    """The training-free runs present: those beyond the homework's questions."""
    return [model for model in runs if model not in QUESTION_OF_MODEL]


def run_command(model, out_dir, from_cache=False):
    """The command that (re)creates OUT/<model>'s outputs."""
    return (f"python starter.py --model {model}" + (" --from-cache" if from_cache else "")
            + f" --out {shlex.quote(str(out_dir))}")


def missing_run_note(model, out_dir):
    has_cache = (Path(out_dir) / model / "predictions.npz").is_file()
    return Text(f"No results for {model} yet: run `{run_command(model, out_dir, has_cache)}`, "
                f"then `python starter.py --report --out {shlex.quote(str(out_dir))}` again.", "note")


def outdated_note(run, what, out_dir):
    return Text(f"{run.model}'s {what} predates this version: run "
                f"`{run_command(run.model, out_dir, from_cache=True)}` to add it.", "note")


def format_number(value, digits=4):
    """Fixed decimals; NOT_AVAILABLE for undefined values (None, NaN)."""
    if value is None or np.isnan(value):
        return NOT_AVAILABLE
    return f"{value:.{digits}f}"


def format_ratio(ratio, classes_without_predictions):
    """The max/min count ratio, saying why it is infinite instead of dividing by zero."""
    if np.isinf(ratio):
        return (f"inf: {classes_without_predictions} "
                + ("class has" if classes_without_predictions == 1 else "classes have") + " 0 predictions")
    return format_number(ratio, 2)


def class_arrays(run_metrics, order=None):
    """(wnids, names, true counts, predicted counts, recall with NaN) in `order` (default: as stored)."""
    by_wnid = {entry["wnid"]: entry for entry in run_metrics["classes"]}
    entries = [by_wnid[wnid] for wnid in order] if order else run_metrics["classes"]
    recall = np.array([np.nan if e["recall"] is None else e["recall"] for e in entries])
    return ([e["wnid"] for e in entries], [e["name"] for e in entries],
            np.array([e["true_count"] for e in entries]),
            np.array([e["predicted_count"] for e in entries]), recall)


def true_positives(run_metrics):
    """Correct predictions per class, as metrics.json counts them; NaN (so macro-F1 is n/a) in a
    metrics.json from before it did."""
    return np.array([entry.get("true_positives", np.nan) for entry in run_metrics["classes"]],
                    dtype=np.float64)


def run_measures(run_metrics, selection=None):
    """Accuracies, macro-F1 and prediction-count imbalance of one run, from its metrics.json,
    and, given its pseudo_labels.json, the pseudo-labels FixMatch would keep at τ = 0.95."""
    _, _, true_counts, predicted_counts, _ = class_arrays(run_metrics)
    return {"num_images": run_metrics["num_images"], "accuracy": run_metrics["accuracy"],
            "top5_accuracy": run_metrics["top5_accuracy"],
            "balanced_accuracy": run_metrics["balanced_accuracy"],
            "macro_f1": metrics.macro_f1(true_positives(run_metrics), true_counts, predicted_counts),
            "balanced_count": float(predicted_counts.sum() / len(predicted_counts)),
            **metrics.prediction_imbalance(predicted_counts), **kept_at_training_threshold(selection)}


def kept_at_training_threshold(selection):
    """{"kept_share", "kept_accuracy"} at DebiasPL's τ = 0.95 (None when unknown or none kept)."""
    row = pseudo_labels.at_threshold(selection) if selection else {}
    return {"kept_share": row.get("kept_share"), "kept_accuracy": row.get("accuracy")}


MEASURE_COLUMNS = {  # column title: (measures key, formatter)
    "images": ("num_images", str),
    "accuracy": ("accuracy", format_number),
    "top-5": ("top5_accuracy", format_number),
    "balanced acc.": ("balanced_accuracy", format_number),
    "macro-F1": ("macro_f1", format_number),
    "max/min count": ("max_min_ratio", None),  # needs the zero-class count: format_ratio
    "count std": ("count_std", lambda value: format_number(value, 2)),
    "KL to uniform (nats)": ("kl_from_uniform", format_number),
    "classes < N/(2K)": ("classes_below_half_balanced", str),
    "kept at 0.95": ("kept_share", format_number),
    "acc. of kept at 0.95": ("kept_accuracy", format_number),
}
SUMMARY_COLUMNS = ("images", "accuracy", "balanced acc.", "macro-F1", "max/min count",
                   "KL to uniform (nats)")
COMPARISON_COLUMNS = ("accuracy", "top-5", "balanced acc.", "macro-F1", "max/min count",
                      "count std", "KL to uniform (nats)", "classes < N/(2K)", "kept at 0.95",
                      "acc. of kept at 0.95")
MEASURE_NOTE = ("macro-F1: mean F1 over the classes with images (as sklearn's f1_score, "
                "average='macro', zero_division=0). Imbalance of the predicted counts over the K "
                "classes: max/min count = most over least predicted class's count, inf when a class "
                "gets no prediction; count std = population standard deviation (ddof=0); KL to "
                "uniform = sum p log(pK) of the predicted-class distribution p, in nats (0 = balanced, "
                "log K = one class takes everything); classes < N/(2K) = classes predicted fewer "
                "than half the balanced count N/K. Kept at 0.95: share of images whose top softmax "
                "probability is at least 0.95, the pseudo-labels DebiasPL's zero-shot training "
                "selects, and the accuracy of those.")


def measures_table(runs, columns, caption):
    rows = []
    for model, run in runs.items():
        if run.metrics is None:
            continue
        measures = run_measures(run.metrics, run.pseudo_labels)
        cells = [model]
        for column in columns:
            key, formatter = MEASURE_COLUMNS[column]
            cells.append(format_ratio(measures[key], measures["classes_without_predictions"])
                         if formatter is None else formatter(measures[key]))
        rows.append(cells)
    return Table(["run", *columns], rows, caption)


def weights_cell(settings):
    identity = settings.get("weights_identity", {})
    if "sha256" in identity:
        return f"{Path(identity['path']).name} (SHA-256 {identity['sha256'][:12]})"
    if "tag" in identity:
        return f"{identity['tag']} (open_clip {identity.get('open_clip', '?')})"
    return str(settings.get("weights", settings.get("provenance", "")))  # no meta: "unknown ..."


PROVENANCE_SETTINGS = {"prompts": "prompts", "class_names": "names", "branch": "branch"}  # meta key: label


def provenance_table(runs):
    """What produced each run, one row per run: model, weights, prompts or branch, precision,
    data, images and the date its logits were cached."""
    columns = ["run", "model", "weights", "prompts / branch", "precision", "data", "images", "date"]
    rows = []
    for model, run in runs.items():
        if run.metrics is None:
            rows.append([model, run.title, "not analysed yet", "", "", "", "", ""])
            continue
        settings = run.metrics.get("settings", {})
        # A training-free run carries the settings of clip's cache it started from.
        source = settings.get(REFERENCE_MODEL, settings)
        setting = (f"on {REFERENCE_MODEL}'s cached logits" if source is not settings else
                   "; ".join(f"{label} {settings[key]}" for key, label in PROVENANCE_SETTINGS.items()
                             if key in settings))
        cache = run.directory / "predictions.npz"
        dated = cache if cache.is_file() else run.directory / "metrics.json"
        rows.append([model, run.title, weights_cell(source), setting,
                     str(settings.get("precision", source.get("precision", ""))),
                     str(source.get("data", "")), str(run.metrics["num_images"]),
                     datetime.fromtimestamp(dated.stat().st_mtime).strftime("%Y-%m-%d")])
    shown = [index for index, column in enumerate(columns)
             if column != "precision" or any(row[index] for row in rows)]
    return Table([columns[i] for i in shown], [[row[i] for i in shown] for row in rows],
                 "What produced the results")


def title_section(runs, out_dir, generated, name, student_id):
    missing = [model for model in QUESTION_OF_MODEL if runs.get(model) is None
               or runs[model].metrics is None]
    gap = " " + "\u00a0" * 4  # no-break spaces: paragraphs collapse runs of ordinary spaces
    blocks = [Text(f"Name: {name or '_' * 26}{gap}Student ID: {student_id or '_' * 14}{gap}"
                   f"Date of submission: {generated:%Y-%m-%d}", "subheading")]
    simulated = any(run.simulated for run in runs.values())
    if simulated:
        blocks.append(Text(f"{SIMULATED}: these results come from simulated logits shaped like "
                           "real runs (`python starter.py --demo`), not from CLIP or DebiasPL: "
                           "they show what the report looks like, nothing about the models.",
                           "subheading"))
    blocks += [measures_table(runs, SUMMARY_COLUMNS, "Summary"),
               provenance_table(runs),
               Text(f"Generated {generated:%Y-%m-%d %H:%M %Z} by `python starter.py --report` from "
                    f"the runs in {out_dir}. Sub-questions Q1(a) to Q2(c) follow in order; "
                    + MEASURE_NOTE, "note")]
    blocks += [missing_run_note(model, out_dir) for model in missing]
    blocks += [outdated_note(run, "metrics.json (true positives, for macro-F1)", out_dir)
               for run in runs.values()
               if run.metrics is not None and np.isnan(true_positives(run.metrics)).any()]
    return Section((f"{SIMULATED}: " if simulated else "")
                   + "Homework 3: classification with imbalanced pseudo-labels",
                   "CLIP RN50 zero-shot vs DebiasPL on ImageNet100", blocks)


def figure_blocks(run, names_and_captions, out_dir, label, own_page=False):
    """An Image per existing PNG, or a note with the command that draws it."""
    blocks = []
    for name, caption in names_and_captions:
        if (run.directory / name).is_file():
            blocks.append(Image(f"{run.model}/{name}", f"{label}: {run.title}, {caption}", own_page))
        else:
            blocks.append(Text(f"{run.model}/{name} is missing: run "
                               f"`{run_command(run.model, out_dir, from_cache=True)}`.", "note"))
    return blocks


def class_confusion_tables(run, label, out_dir):
    """Q(a)'s who steals from whom: the classes feeding each most predicted class, where each
    least predicted class's images go."""
    if "class_confusions" not in run.metrics:
        return [outdated_note(run, "metrics.json (who steals from whom)", out_dir)]
    class_entries = {entry["wnid"]: entry for entry in run.metrics["classes"]}
    tables = []
    for entry in run.metrics["class_confusions"]:
        incoming = entry["direction"] == "incoming"
        counted = class_entries[entry["wnid"]]
        other = "true" if incoming else "predicted"
        rows = [[cell[other]["name"], str(cell["count"]), f"{cell['share_of_true']:.0%}"]
                for cell in entry["confusions"]] or [["none", "", ""]]
        tables.append(Table(
            ["from class" if incoming else "predicted as", "images", "of true class"], rows,
            f"{label} {entry['role']}: {entry['name']} ({counted['predicted_count']} predictions, "
            f"{counted['true_count']} images) " + ("takes images of" if incoming else "loses images to"),
            compact=True))
    return tables


def top_confusion_table(run, label, out_dir):
    """Q(b)'s who steals from whom: the largest off-diagonal cells of the confusion matrix."""
    if "top_confusions" not in run.metrics:
        return [outdated_note(run, "metrics.json (who steals from whom)", out_dir)]
    cells = run.metrics["top_confusions"]
    rows = [[str(rank), cell["true"]["name"], cell["predicted"]["name"], str(cell["count"]),
             f"{cell['share_of_true']:.0%}"] for rank, cell in enumerate(cells, start=1)]
    return [Table(["#", "true class", "predicted as", "images", "of true class"], rows,
                  f"{label} who steals from whom: the {len(cells)} largest confusions "
                  "(off-diagonal cells of the confusion matrix)")]


def neighbour_cells(neighbours, rank, decimals):
    """(class name, cosine) of the rank-th neighbour, or blanks past the end of the list."""
    if rank >= len(neighbours):
        return ["", ""]
    return [neighbours[rank]["name"], f"{neighbours[rank]['cosine']:.{decimals}f}"]


def neighbour_table(literal, centered, class_entries, label):
    """One class's 10 nearest centroids, literal and centered side by side, most similar first;
    the footer repeats both cosine vectors."""
    entry = class_entries[literal["wnid"]]
    caption = (f"{label} {literal['role']}: {literal['name']} ({literal['wnid']}), "
               f"{entry['predicted_count']} predictions, {entry['true_count']} images")
    decimals = {kind: shown for kind, _, shown in analysis.CENTROID_KINDS}  # as in the terminal
    kinds = [("literal", literal["neighbors"], decimals[None]),
             ("centered", centered["neighbors"] if centered else [], decimals[analysis.CENTERED])]
    rows = [[str(rank + 1), *(cell for _, neighbours, decimals in kinds
                              for cell in neighbour_cells(neighbours, rank, decimals))]
            for rank in range(max(len(neighbours) for _, neighbours, _ in kinds))]
    footer = "; ".join(f"{kind} vector: ["
                       + ", ".join(f"{n['cosine']:.{decimals}f}" for n in neighbours) + "]"
                       for kind, neighbours, decimals in kinds if neighbours)
    return Table(["#", "literal: class", "cosine", "centered: class", "cosine"], rows, caption,
                 footer, compact=True)


def centroid_blocks(run, out_dir, label, groupings):
    """Per grouping, each role's neighbour table (literal and centered)."""
    if run.centroids is None:
        return [Text(f"{run.model}/centroids.json is missing: run "
                     f"`{run_command(run.model, out_dir, from_cache=True)}`.", "note")]
    class_entries = {entry["wnid"]: entry for entry in run.metrics["classes"]}
    blocks = [Text(CENTERING_NOTE, "note")]
    if analysis.CENTERED not in run.centroids:
        blocks.append(outdated_note(run, "centroids.json (centered neighbours)", out_dir))
    for grouping in groupings:
        grouped_by = analysis.GROUPINGS[grouping][0]
        blocks.append(Text(f"Images grouped by {grouped_by} ({grouping}); a class's centroid is "
                           "the mean logit vector of its images", "subheading"))
        centered = run.centroids.get(analysis.CENTERED, {}).get(grouping, {}).get("queries", [])
        for index, query in enumerate(run.centroids.get(grouping, {}).get("queries", [])):
            if query["neighbors"]:
                blocks.append(neighbour_table(query, centered[index] if centered else None,
                                              class_entries, label))
            else:
                blocks.append(Text(f"{label} {query['role']}: {query['name']} ({query['wnid']}): "
                                   f"{query.get('note', 'no neighbours')}.", "note"))
    return blocks


def stale_order_notes(run, runs, out_dir):
    """A note when the run's figures follow another class order than clip's current one, which
    happens when clip is rerun after the run was analysed."""
    reference = runs.get(REFERENCE_MODEL)
    if (run.model == REFERENCE_MODEL or reference is None or reference.metrics is None
            or run.metrics["order"] == reference.metrics["own_order"]):
        return []
    return [Text(f"{run.model}'s figures are not in {REFERENCE_MODEL}'s current class order "
                 f"({REFERENCE_MODEL} ran again after them): run "
                 f"`{run_command(run.model, out_dir, from_cache=True)}`.", "note")]


def subquestion_blocks(run, runs, out_dir, letter, label, groupings=("by_predicted",)):
    """The blocks answering (a), (b) or (c) for one run."""
    if letter == "c":
        return centroid_blocks(run, out_dir, label, groupings)
    blocks = stale_order_notes(run, runs, out_dir)
    if letter == "a":
        return (blocks + figure_blocks(run, HISTOGRAM_FIGURES, out_dir, label)
                + class_confusion_tables(run, label, out_dir))
    return (blocks + figure_blocks(run, (CONFUSION_FIGURE,), out_dir, label, own_page=True)
            + top_confusion_table(run, label, out_dir))


def question_sections(model, runs, out_dir):
    """Sections Q?(a), Q?(b), Q?(c) of one question; notes with the command when not run."""
    question = QUESTION_OF_MODEL[model]
    run = runs.get(model)
    sections = []
    for letter, topic in SUBQUESTION_TOPICS.items():
        label = f"{question}({letter})"
        section = Section(label, f"{MODEL_TITLES.get(model, model)}: {topic}")
        if run is None or run.metrics is None:
            section.blocks.append(missing_run_note(model, out_dir))
        else:
            section.blocks += subquestion_blocks(run, runs, out_dir, letter, label)
        sections.append(section)
    return sections


def settings_text(run):
    """A training-free run's own settings in one line (those of clip's cache are left out)."""
    settings = run.metrics.get("settings", {})
    parts = [f"{key} {value}" for name, group in settings.items()
             if isinstance(group, dict) and name != REFERENCE_MODEL for key, value in group.items()]
    return Text(f"{run.title}, training-free: it runs no model and changes {REFERENCE_MODEL}'s "
                "cached logits. Settings: " + (", ".join(parts) or "none recorded") + ".")


def extra_section(model, runs, out_dir):
    """A training-free run: its settings and its own figures; the standard ones, its tables and
    its files are in the appendix."""
    run = runs[model]
    section = Section(model, f"{run.title} (training-free)")
    if run.metrics is None:
        section.blocks.append(missing_run_note(model, out_dir))
        return section
    section.blocks.append(settings_text(run))
    section.blocks += figure_blocks(run, EXTRA_RUN_FIGURES.get(model, ()), out_dir, model)
    return section


def format_json_value(value):
    """A JSON value in a cell: floats to 4 significant digits, long number lists as their range."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list) and value and all(isinstance(item, (int, float)) for item in value):
        if len(value) <= 6:
            return ", ".join(format_json_value(item) for item in value)
        return f"{len(value)} values from {min(value):.4g} to {max(value):.4g}"
    if isinstance(value, list):
        return f"{len(value)} entries"
    return str(value)


def json_tables(value, caption):
    """A JSON object as tables whatever its layout (prior.json is another engineer's format): one
    of its fields (nested keys joined by '.'), then one per list of objects, a row per object."""
    fields, tables = [], []

    def visit(item, key):
        if isinstance(item, dict):
            for child_key, child in item.items():
                visit(child, f"{key}.{child_key}" if key else str(child_key))
        elif isinstance(item, list) and item and all(isinstance(entry, dict) for entry in item):
            columns = list(dict.fromkeys(column for entry in item for column in entry))
            tables.append(Table(columns, [[format_json_value(entry.get(column, "")) for column in columns]
                                          for entry in item], f"{caption}: {key}"))
        else:
            fields.append([key, format_json_value(item)])

    visit(value, "")
    return ([Table(["field", "value"], fields, caption)] if fields else []) + tables


# ---------------------------------------------------------------------------------------------
# Comparison of the runs over clip's class order

@dataclass
class Comparison:
    wnids: list  # clip's order: most to least predicted by clip
    names: list
    true_counts: np.ndarray
    predicted_counts: dict  # {run: counts in clip's order}
    recalls: dict  # {run: recall in clip's order, NaN where undefined}
    balanced_count: float
    confusions: list  # clip's top_confusions
    simulated: bool

    @property
    def recall_changes(self):
        """{run: recall − clip's recall} for the runs other than clip; NaN where either is undefined."""
        reference = self.recalls[REFERENCE_MODEL]
        return {run: recall - reference for run, recall in self.recalls.items()
                if run != REFERENCE_MODEL}


def comparison_data(runs):
    """Per-class counts and recall of every analysed run in clip's order; None without clip."""
    reference = runs.get(REFERENCE_MODEL)
    if reference is None or reference.metrics is None:
        return None
    order = reference.metrics["own_order"]
    predicted_counts, recalls = {}, {}
    for model, run in runs.items():
        if run.metrics is None:
            continue
        if sorted(entry["wnid"] for entry in run.metrics["classes"]) != sorted(order):
            raise UserError(f"{run.directory} was made on other classes than "
                            f"{reference.directory}; run both on the same dataset.")
        _, _, _, predicted_counts[model], recalls[model] = class_arrays(run.metrics, order)
    wnids, names, true_counts, counts, _ = class_arrays(reference.metrics, order)
    return Comparison(wnids, names, true_counts, predicted_counts, recalls,
                      float(counts.sum() / len(counts)), reference.metrics.get("top_confusions", []),
                      any(run.simulated for run in runs.values()))


def draw_comparison(comparison):
    position = {wnid: index for index, wnid in enumerate(comparison.wnids)}
    cells = [(position[cell["true"]["wnid"]], position[cell["predicted"]["wnid"]])
             for cell in comparison.confusions]
    confused = (f"{REFERENCE_MODEL}'s {len(cells)} largest confusions", cells) if cells else None
    return plotting.comparison_figure(
        comparison.names, comparison.predicted_counts, comparison.recall_changes,
        comparison.balanced_count, REFERENCE_MODEL, confused,
        title=(f"{SIMULATED}: " if comparison.simulated else "")
        + f"predictions per class and recall change, classes in {REFERENCE_MODEL}'s order")


def per_class_table(comparison):
    """Every class in clip's order: its images, and each run's predicted count and recall."""
    columns = ["#", "class", "wnid", "images"]
    for run in comparison.predicted_counts:
        columns += [f"{run} pred.", f"{run} recall"]
    rows = []
    for index, (wnid, name, images) in enumerate(zip(comparison.wnids, comparison.names,
                                                     comparison.true_counts)):
        row = [str(index + 1), name, wnid, str(images)]
        for run, counts in comparison.predicted_counts.items():
            row += [str(counts[index]), format_number(comparison.recalls[run][index])]
        rows.append(row)
    return Table(columns, rows, f"Per class, in {REFERENCE_MODEL}'s order (most to least "
                                "predicted by it)")


def training_free_share(runs, model):
    """The homework's underlying question in one paragraph: how much of DebiasPL's change over
    clip does a training-free run reach? None until clip, debiaspl and it have run."""
    models = (REFERENCE_MODEL, "debiaspl", model)
    if not all(runs.get(m) is not None and runs[m].metrics for m in models):
        return None
    clip, debiaspl, free_run = (run_measures(runs[m].metrics) for m in models)
    sentences = []
    for key, label in (("accuracy", "accuracy"), ("balanced_accuracy", "balanced accuracy"),
                       ("macro_f1", "macro-F1"), ("kl_from_uniform", "KL divergence from uniform")):
        trained, free = debiaspl[key] - clip[key], free_run[key] - clip[key]
        share = f" ({free / trained:.0%} of DebiasPL's change)" if abs(trained) > 1e-12 else ""
        sentences.append(f"{label}: DebiasPL {trained:+.4f}, {model} {free:+.4f}{share}")
    return Text(f"Change against clip, DebiasPL (trained) vs {model} (training-free, on clip's own "
                "logits). " + "; ".join(sentences) + ". DebiasPL is a separately trained ResNet-50, "
                "so its change mixes debiasing with everything else training does.")


def comparison_section(runs, comparison, out_dir):
    section = Section("Comparison", f"all runs, classes in {REFERENCE_MODEL}'s order")
    if comparison is None:
        section.blocks.append(missing_run_note(REFERENCE_MODEL, out_dir))
        return section
    section.blocks.append(measures_table(runs, COMPARISON_COLUMNS,
                                         "Accuracy and prediction-count imbalance"))
    section.blocks += [text for text in (training_free_share(runs, m) for m in extra_models(runs))
                       if text is not None]
    selection = pseudo_label_table(runs)
    if selection.rows:
        section.blocks.append(selection)
    if len(comparison.predicted_counts) == 1:
        section.blocks.append(Text("Only clip has results: the other runs add their curves, "
                                   "columns and recall changes once they exist.", "note"))
    marks = (f"; ▼ and ▲ mark the predicted and true classes of {REFERENCE_MODEL}'s "
             f"{len(comparison.confusions)} largest confusions" if comparison.confusions else "")
    section.blocks.append(Image(COMPARISON_FIGURE, "Comparison: predictions per class of every run "
                                f"(top) and recall change against {REFERENCE_MODEL} (bottom){marks}"))
    return section


WHY_FILE = "why.json"
ALIGNMENT_FILE = "alignment.json"  # clip-ca's mismatched classes and their new names


def figure4_table(runs):
    """One row per run: Figure 4's claim tested on its literal and centered centroids."""
    rows = []
    for model, run in runs.items():
        claims = (run.metrics or {}).get("figure4_claim")
        if claims:
            rows.append([model] + [cell for kind in ("literal", "centered") for cell in (
                format_number(claims[kind]["rho"], 3), format_number(claims[kind]["p_value"], 3),
                "yes" if claims[kind]["supported"] else "no")])
    return Table(["run", "ρ (literal)", "p", "supported", "ρ (centered)", "p", "supported"], rows,
                 "Figure 4's claim: Spearman ρ of each class's predicted count against the mean "
                 "cosine of its 10 nearest centroids (images grouped by pseudo-label); supported "
                 "when ρ < 0 with p < 0.05", compact=True)


def concept_blocks(diagnosis):
    """clip's widest concept gaps and CAP's margin against the largest confusions."""
    gaps = why.widest_gaps(diagnosis)
    margin = diagnosis["concepts"]["margin"]
    return [
        Table(["class", "text-image cosine", "nearest text, if not its own"],
              [[f"{entry['name']} ({entry['wnid']})", format_number(entry["cosine"], 3),
                "" if entry["own_text_nearest"] else entry["nearest_text"]["name"]]
               for entry in gaps],
              f"Concept mismatch: the {len(gaps)} classes whose text embedding is farthest from "
              "their images (cosine of the text embedding and the normalised mean image embedding, "
              "images grouped by true label)", compact=True),
        Text(f"Concept confusion: {margin['coinciding_with_top_confusions']} of the "
             f"{len(margin['pairs'])} class pairs that CAP's confusion-aware margin would push "
             f"apart most are among {REFERENCE_MODEL}'s {margin['top_confusions_compared']} largest "
             f"confusions (similarity: {margin['similarity']}).")]


def alignment_block(runs, out_dir):
    """clip-ca's renamed classes with their recall before and after, or how to get them."""
    path = Path(out_dir) / CONCEPT_ALIGNED_MODEL / ALIGNMENT_FILE
    if not path.is_file() or REFERENCE_MODEL not in runs or runs[REFERENCE_MODEL].metrics is None:
        how = ("on a real clip run (it embeds WordNet's names with that run's CLIP)"
               if REFERENCE_MODEL in runs and runs[REFERENCE_MODEL].simulated
               else f"with `{run_command(CONCEPT_ALIGNED_MODEL, out_dir)}`")
        return Text(f"Algorithm 1 (CAP's detection of concept-mismatched classes) runs {how}.", "note")
    alignment = read_json(path, f"{CONCEPT_ALIGNED_MODEL}'s {ALIGNMENT_FILE}")
    recall = {model: {entry["wnid"]: entry["recall"] for entry in runs[model].metrics["classes"]}
              for model in (REFERENCE_MODEL, CONCEPT_ALIGNED_MODEL)
              if model in runs and runs[model].metrics is not None}
    rows = [[f"{entry['name']} ({entry['wnid']})", entry["chosen"] if entry["renamed"] else "(kept)"]
            + [format_number(recall[model].get(entry["wnid"]), 3) for model in recall]
            for entry in alignment["mismatched"]]
    return Table(["mismatched class", "renamed to", *(f"recall, {model}" for model in recall)], rows,
                 f"Concept-mismatched classes found by Algorithm 1 in {REFERENCE_MODEL}'s image "
                 f"features, and {CONCEPT_ALIGNED_MODEL}'s WordNet synonym for each", compact=True)


def why_section(runs, out_dir):
    """Why the pseudo-labels are imbalanced: Figure 4's claim on every run, then the CAP paper's
    two causes in clip's features."""
    section = Section("Why", "the causes of imbalance (Figure 4's claim; concept mismatch and "
                             "confusion, CAP)")
    section.blocks.append(figure4_table(runs))
    path = Path(out_dir) / REFERENCE_MODEL / WHY_FILE
    diagnosis = read_json(path, f"{REFERENCE_MODEL}'s {WHY_FILE}") if path.is_file() else None
    if diagnosis is None or diagnosis["concepts"] is None:
        section.blocks.append(Text(f"No concept analysis: {why.CONCEPT_NOTE}.", "note"))
        return section
    section.blocks += concept_blocks(diagnosis)
    section.blocks.append(alignment_block(runs, out_dir))
    return section


def share_and_accuracy(share, accuracy):
    """A pseudo-label table cell: share of images selected / accuracy of their pseudo-labels."""
    return f"{format_number(share, 3)} / {format_number(accuracy, 3)}"


def pseudo_label_table(runs):
    """Per run: share kept and accuracy of the kept pseudo-labels at a few thresholds τ, the
    classes left with none at 0.95, and class-balanced top-k."""
    columns = ["run", *(f"τ = {threshold:g}: kept / acc." for threshold in PSEUDO_LABEL_THRESHOLDS),
               "classes none kept at 0.95", f"top-{PSEUDO_LABEL_TOP_K}: selected / acc."]
    rows = []
    for model, run in runs.items():
        if run.pseudo_labels is None:
            continue
        cells = [model]
        for threshold in PSEUDO_LABEL_THRESHOLDS:
            row = pseudo_labels.at_threshold(run.pseudo_labels, threshold)
            cells.append(share_and_accuracy(row["kept_share"], row["accuracy"]))
        cells.append(str(pseudo_labels.at_threshold(run.pseudo_labels)["classes_without_kept"]))
        top_k = next(row for row in run.pseudo_labels["class_balanced_top_k"]["rows"]
                     if row["k"] == PSEUDO_LABEL_TOP_K)
        cells.append(share_and_accuracy(top_k["selected_share"], top_k["accuracy"]))
        rows.append(cells)
    return Table(columns, rows, "Pseudo-labels a semi-supervised learner would train on: share of "
                 "images kept and accuracy of their pseudo-labels (FixMatch: top softmax "
                 f"probability ≥ τ; class-balanced: the {PSEUDO_LABEL_TOP_K} most confident images "
                 "predicted as each class)")


def appendix_sections(runs, comparison, out_dir):
    """Per-class numbers, the by-true-label neighbours, the runs' pseudo-label figures and the
    training-free runs' full answers and files: with --appendix only."""
    sections = []
    if comparison is not None:
        sections.append(Section("Appendix A", "per-class predicted counts and recall",
                                [per_class_table(comparison)], new_page=True))
    by_true = Section("Appendix B", "nearest class centroids, images grouped by true label",
                      new_page=not sections)
    for model, run in runs.items():
        if run.metrics is not None:
            label = f"{QUESTION_OF_MODEL.get(model, model)}(c)"
            by_true.blocks += centroid_blocks(run, out_dir, label, ("by_true",))[1:]
    sections.append(by_true)
    selection = Section("Appendix C", "pseudo-label selection of every run")
    for model, run in runs.items():
        if run.pseudo_labels is not None:
            selection.blocks += figure_blocks(run, ((PSEUDO_LABEL_FIGURE, "pseudo-label selection"),),
                                              out_dir, model)
    sections.append(selection)
    for letter, model in zip("DEFGHI", extra_models(runs)):
        run = runs[model]
        section = Section(f"Appendix {letter}", f"{run.title}: the homework's (a), (b), (c) and "
                                                "its files")
        if run.metrics is not None:
            for subquestion in SUBQUESTION_TOPICS:
                section.blocks += subquestion_blocks(run, runs, out_dir, subquestion,
                                                     f"{model} ({subquestion})")
        for name, content in run.files.items():
            section.blocks += json_tables(content, f"{model}/{name}")
        sections.append(section)
    return sections


def build_sections(runs, comparison, out_dir, generated, name="", student_id="", appendix=False):
    """The whole report as data: title page, Q1(a)..Q2(c), training-free runs, comparison and,
    when asked for, the appendix."""
    sections = [title_section(runs, out_dir, generated, name, student_id)]
    for model in QUESTION_OF_MODEL:
        sections += question_sections(model, runs, out_dir)
    sections += [extra_section(model, runs, out_dir) for model in extra_models(runs)]
    sections.append(comparison_section(runs, comparison, out_dir))
    sections.append(why_section(runs, out_dir))
    return sections + (appendix_sections(runs, comparison, out_dir) if appendix else [])


# ---------------------------------------------------------------------------------------------
# Markdown

def markdown_cell(text):
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown_table(table):
    lines = [f"**{table.caption}**", ""] if table.caption else []
    lines.append("| " + " | ".join(markdown_cell(c) for c in table.columns) + " |")
    lines.append("|" + "---|" * len(table.columns))
    lines += ["| " + " | ".join(markdown_cell(c) for c in row) + " |" for row in table.rows]
    if table.footer:
        lines += ["", f"*{table.footer}*"]
    return "\n".join(lines)


def render_markdown(sections):
    """Headings, tables and figure links (paths relative to OUT, where report.md lives)."""
    parts = []
    for index, section in enumerate(sections):
        heading = "#" if index == 0 else "##"
        parts.append(f"{heading} {section.title}" + (f": {section.subtitle}" if section.subtitle else ""))
        for block in section.blocks:
            if isinstance(block, Table):
                parts.append(markdown_table(block))
            elif isinstance(block, Image):
                parts.append(f"![{block.caption}]({block.path})\n\n*{block.caption}* (`{block.path}`)")
            elif block.style == "subheading":
                parts.append(f"### {block.text}")
            elif block.style == "note":
                parts.append(f"*{block.text}*")
            else:
                parts.append(block.text)
    return "\n\n".join(parts) + "\n"


# ---------------------------------------------------------------------------------------------
# PDF: reportlab platypus on A4 pages. Text and tables flow and split across pages; a figure
# wider than a portrait page's frame gets landscape pages; the figures were drawn at the size
# they are printed (plotting's page widths), so they are placed unscaled when they fit.

PORTRAIT, LANDSCAPE = "portrait", "landscape"
VERTICAL_MARGIN = 0.5  # inches above and below the frame: the running header and the footer
IMAGE_HEADROOM = 0.8  # inches of a frame kept for a section heading and a caption above a figure
TABLE_FONT_SIZE = {False: 7.5, True: 7.0}  # by Table.compact
COMPACT_COLUMN_INCHES = 1.2  # compact tables wrap longer cells, so that they sit side by side
TABLE_GAP = 10  # points between side-by-side tables
CELL_PADDING = 3  # points
FONT = "DejaVuSans"  # ships with matplotlib; has λ, τ, −, ≈, p̂ and the arrows, unlike Helvetica


def register_fonts():
    directory = Path(get_data_path()) / "fonts" / "ttf"
    for face, bold, italic in ((FONT, 0, 0), (f"{FONT}-Bold", 1, 0), (f"{FONT}-Oblique", 0, 1),
                               (f"{FONT}-BoldOblique", 1, 1), (f"{FONT}Mono", None, None)):
        if face not in pdfmetrics.getRegisteredFontNames():
            pdfmetrics.registerFont(TTFont(face, str(directory / f"{face}.ttf")))
        if bold is not None:
            addMapping(FONT, bold, italic, face)


def paragraph_styles():
    body = ParagraphStyle("body", fontName=FONT, fontSize=9, leading=11.5, spaceAfter=5)
    bold = f"{FONT}-Bold"
    return {
        "body": body,
        "note": ParagraphStyle("note", body, fontName=f"{FONT}-Oblique", fontSize=8, leading=10,
                               textColor=colors.HexColor("#404040")),
        "subheading": ParagraphStyle("subheading", body, fontName=bold, fontSize=9.5, leading=12,
                                     spaceBefore=3, keepWithNext=1),
        "caption": ParagraphStyle("caption", body, fontName=bold, fontSize=8.5, leading=10.5,
                                  spaceAfter=3, keepWithNext=1),
        "footer": ParagraphStyle("footer", body, fontSize=6.5, leading=8, spaceBefore=2,
                                 spaceAfter=TABLE_GAP),
        "section": ParagraphStyle("section", body, fontName=bold, fontSize=13, leading=16,
                                  spaceAfter=6, keepWithNext=1),
        "title": ParagraphStyle("title", body, fontName=bold, fontSize=16, leading=20,
                                spaceAfter=8, keepWithNext=1),
    }


def markup(text):
    """Text as reportlab paragraph markup: escaped, `code` in the monospaced font."""
    return re.sub(r"`([^`]+)`", rf'<font face="{FONT}Mono">\1</font>', escape(str(text)))


def page_geometry(orientation):
    """(page size, frame width, frame height) in points."""
    size = A4 if orientation == PORTRAIT else landscape(A4)
    width = (plotting.PORTRAIT_WIDTH if orientation == PORTRAIT else plotting.LANDSCAPE_WIDTH) * inch
    return size, width, size[1] - 2 * VERTICAL_MARGIN * inch


def table_flowable(table, styles, max_width):
    """A reportlab Table as wide as its contents, at most max_width: a column too wide for
    that (or, in a compact table, wider than COMPACT_COLUMN_INCHES) wraps its cells."""
    size = TABLE_FONT_SIZE[table.compact]
    rows = [[str(cell) for cell in table.columns], *[[str(cell) for cell in row] for row in table.rows]]
    widths = [max(pdfmetrics.stringWidth(cell, f"{FONT}-Bold" if r == 0 else FONT, size)
                  for r, cell in enumerate(column)) + 2 * CELL_PADDING for column in zip(*rows)]
    natural = list(widths)
    cap = COMPACT_COLUMN_INCHES * inch if table.compact else max_width
    # Too wide: columns narrower than their share keep their width, the others share the rest.
    remaining = max_width
    for index, width in enumerate(sorted(widths)):
        if width > remaining / (len(widths) - index):
            cap = min(cap, remaining / (len(widths) - index))
            break
        remaining -= width
    widths = [min(width, cap) for width in widths]
    cell_style = ParagraphStyle("cell", styles["body"], fontSize=size, leading=size * 1.2, spaceAfter=0)
    wrapped = [column for column, (width, wanted) in enumerate(zip(widths, natural)) if wanted > width]
    for r, row in enumerate(rows):
        for column in wrapped:
            row[column] = Paragraph(f"<b>{escape(row[column])}</b>" if r == 0 else escape(row[column]),
                                    cell_style)
    flowable = PdfTable(rows, colWidths=widths, repeatRows=1, hAlign="LEFT")
    flowable.setStyle(TableStyle([
        ("FONT", (0, 0), (-1, -1), FONT, size, size * 1.2),
        ("FONT", (0, 0), (-1, 0), f"{FONT}-Bold", size, size * 1.2),
        ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#E8E8E8")),
        ("GRID", (0, 0), (-1, -1), 0.3, colors.HexColor("#999999")),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("LEFTPADDING", (0, 0), (-1, -1), CELL_PADDING),
        ("RIGHTPADDING", (0, 0), (-1, -1), CELL_PADDING),
        ("TOPPADDING", (0, 0), (-1, -1), 1),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 2)]))
    return flowable, sum(widths)


def table_flowables(tables, styles, frame_width):
    """Flowables of consecutive tables: each under its caption with its footer below; compact
    ones side by side as many as fit the frame's width."""
    built = [(table, *table_flowable(table, styles, frame_width)) for table in tables]
    if not all(table.compact for table in tables):
        flowables = []
        for table, flowable, _ in built:
            if table.caption:
                flowables.append(Paragraph(markup(table.caption), styles["caption"]))
            flowables.append(flowable)
            if table.footer:
                flowables.append(Paragraph(markup(table.footer), styles["footer"]))
            else:
                flowable.spaceAfter = TABLE_GAP
        return flowables
    rows, row, used = [], [], 0.0
    for table, flowable, width in built:
        if row and used + TABLE_GAP + width > frame_width:
            rows.append(row)
            row, used = [], 0.0
        row.append((table, flowable, width))
        used += width + (TABLE_GAP if len(row) > 1 else 0)
    rows.append(row)
    flowables = []
    for row in rows:
        cells = [[Paragraph(markup(table.caption), styles["caption"]), flowable]
                 + ([Paragraph(markup(table.footer), styles["footer"])] if table.footer else [])
                 for table, flowable, _ in row]
        # The row's spare width is shared out, so that captions wrap less.
        spare = (frame_width - sum(width + TABLE_GAP for _, _, width in row)) / len(row)
        outer = PdfTable([cells], colWidths=[width + TABLE_GAP + max(spare, 0) for _, _, width in row],
                         hAlign="LEFT", spaceAfter=TABLE_GAP,
                         style=[("VALIGN", (0, 0), (-1, -1), "TOP"),
                                ("LEFTPADDING", (0, 0), (-1, -1), 0),
                                ("RIGHTPADDING", (0, 0), (-1, -1), TABLE_GAP),
                                ("TOPPADDING", (0, 0), (-1, -1), 0)])
        flowables.append(outer)  # one row: never split, moved whole to the next page
    return flowables


def drawn_size(block, out_dir):
    """(width, height) in points of a figure at the size it was drawn."""
    with PILImage.open(Path(out_dir) / block.path) as image:
        return tuple(pixels / FIGURE_DPI * inch for pixels in image.size)


def printed_scale(size, frame_width, frame_height):
    """How much a figure of `size` is shrunk to fit a frame under its heading (at most 1)."""
    width, height = size
    return min(1.0, frame_width / width, (frame_height - IMAGE_HEADROOM * inch) / height)


def image_flowables(block, out_dir, styles, frame_width, frame_height):
    """Caption, then the figure at its drawn size, shrunk only where the frame is smaller."""
    width, height = drawn_size(block, out_dir)
    scale = printed_scale((width, height), frame_width, frame_height)
    return [Paragraph(markup(f"{block.caption}  ({block.path})"), styles["caption"]),
            PdfImage(str(Path(out_dir) / block.path), width * scale, height * scale, hAlign="LEFT")]


def image_orientation(block, out_dir):
    """The page orientation that prints a figure larger; None (either) when both print it whole."""
    size = drawn_size(block, out_dir)
    portrait, landscape = (printed_scale(size, *page_geometry(orientation)[1:])
                           for orientation in (PORTRAIT, LANDSCAPE))
    if min(portrait, landscape) > 0.99:
        return None
    return LANDSCAPE if landscape > portrait else PORTRAIT


def block_groups(blocks):
    """Blocks with consecutive tables grouped (compact ones may share a row)."""
    groups = []
    for block in blocks:
        if isinstance(block, Table) and groups and isinstance(groups[-1], list):
            groups[-1].append(block)
        else:
            groups.append([block] if isinstance(block, Table) else block)
    return groups


def pdf_story(sections, out_dir, styles):
    """The flowables of the whole report, with page breaks and page templates switched where
    a figure needs another orientation or a page of its own."""
    story, orientation = [], PORTRAIT
    for index, section in enumerate(sections):
        heading = Paragraph(markup(section.title + (f": {section.subtitle}" if section.subtitle else "")),
                            styles["title" if index == 0 else "section"])
        heading.section_title = section.title  # read by ReportDocument.afterFlowable
        if section.new_page:
            story.append(PageBreakIfNotEmpty(PORTRAIT))
            orientation = PORTRAIT
        pending = [heading]  # placed with the first block, after any page break it needs
        for group in block_groups(section.blocks):
            if isinstance(group, Image):
                wanted = image_orientation(group, out_dir) or (PORTRAIT if group.own_page else orientation)
                if wanted != orientation or group.own_page:
                    story.append(PageBreakIfNotEmpty(wanted))
                    orientation = wanted
            _, frame_width, frame_height = page_geometry(orientation)
            story += pending
            pending = []
            if isinstance(group, Image):
                story += image_flowables(group, out_dir, styles, frame_width, frame_height)
                if group.own_page:
                    story.append(PageBreakIfNotEmpty(orientation))
            elif isinstance(group, list):
                story += table_flowables(group, styles, frame_width)
            else:
                story.append(Paragraph(markup(group.text), styles[group.style]))
        story += pending
    return story


class ReportDocument(BaseDocTemplate):
    """A4 pages, portrait and landscape, whose running header names the sections they show and
    whose footer numbers them."""

    def __init__(self, file, first_section, footer, simulated, **options):
        self.current_section, self.page_sections = first_section, []
        self.footer, self.simulated = footer, simulated
        templates = []
        for orientation in (PORTRAIT, LANDSCAPE):
            size, frame_width, frame_height = page_geometry(orientation)
            frame = Frame((size[0] - frame_width) / 2, VERTICAL_MARGIN * inch, frame_width,
                          frame_height, leftPadding=0, rightPadding=0, topPadding=0, bottomPadding=0)
            templates.append(PageTemplate(orientation, [frame], onPageEnd=self.finish_page,
                                          pagesize=size))
        super().__init__(file, pageTemplates=templates, **options)

    def afterFlowable(self, flowable):
        if isinstance(flowable, (ActionFlowable, PageBreak)):  # layout actions, not content
            return
        title = getattr(flowable, "section_title", None)
        if not self.page_sections and not title:  # the page goes on with the section before
            self.page_sections.append(f"{self.current_section} (continued)")
        if title:
            self.current_section = title
            self.page_sections.append(title)

    def finish_page(self, canvas, document):
        width, height = canvas._pagesize
        canvas.saveState()
        canvas.setFont(f"{FONT}-Bold", 8)
        if self.simulated:
            canvas.setFillColor(colors.HexColor("#B00020"))
        header = (f"{SIMULATED} (demo, not a real run) · " if self.simulated else "") + " · ".join(self.page_sections)
        frame_width = page_geometry(PORTRAIT if width < height else LANDSCAPE)[1]
        canvas.drawString((width - frame_width) / 2, height - 0.32 * inch, header)
        canvas.setFillColor(colors.HexColor("#666666"))
        canvas.setFont(FONT, 7)
        canvas.drawCentredString(width / 2, 0.25 * inch, f"{self.footer}   page {canvas.getPageNumber()}")
        canvas.restoreState()
        self.page_sections = []


def render_pdf(sections, out_dir, file, footer, simulated):
    """Write the sections as a PDF to the binary `file`."""
    register_fonts()
    document = ReportDocument(file, sections[0].title, footer, simulated, title=sections[0].title,
                              subject=sections[0].subtitle, author="python starter.py --report")
    document.build(pdf_story(sections, out_dir, paragraph_styles()))


# ---------------------------------------------------------------------------------------------

def write_report(out_dir, name="", student_id="", appendix=False):
    """Write OUT/comparison.png (when clip has run), OUT/report.pdf and OUT/report.md."""
    out_dir = Path(out_dir)
    runs = load_runs(out_dir)
    comparison = comparison_data(runs)
    if comparison is not None:
        write_figure(out_dir / COMPARISON_FIGURE, draw_comparison(comparison))
    generated = datetime.now().astimezone()
    sections = build_sections(runs, comparison, out_dir, generated, name, student_id, appendix)
    simulated = any(run.simulated for run in runs.values())
    footer = (f"{SIMULATED} " if simulated else "") + f"Homework 3 report, generated {generated:%Y-%m-%d %H:%M}"
    write_atomic(out_dir / "report.pdf", lambda f: render_pdf(sections, out_dir, f, footer, simulated))
    write_atomic(out_dir / "report.md", lambda f: f.write(render_markdown(sections).encode()))
    return out_dir / "report.pdf", out_dir / "report.md"
