"""The homework report, built from the run folders under OUT: OUT/report.pdf and OUT/report.md.

    python starter.py --report [--out OUT]

Reads only what `starter.py --model ...` wrote (metrics.json, centroids.json, the PNGs and, for
clip-la, prior.json and la_sweep.png): no torch, no inference. Building is separate from
rendering: pure functions turn the runs into Sections of Text, Table and Image blocks (tables
hold already formatted cells), then one renderer lays them out on PDF pages (matplotlib
PdfPages, object API) and another writes them as Markdown, so both documents show the same
numbers. OUT/comparison.png is drawn by plotting.comparison_figure.
"""
import shlex
import textwrap
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure
from PIL import Image as PILImage

import metrics
import plotting
import analysis
from outputs import (LOGIT_ADJUSTED_MODEL, MODEL_TITLES, REFERENCE_MODEL, UserError, read_json,
                     write_atomic, write_figure)

RUN_MODELS = (REFERENCE_MODEL, "debiaspl", LOGIT_ADJUSTED_MODEL)  # report order
QUESTION_OF_MODEL = {REFERENCE_MODEL: "Q1", "debiaspl": "Q2"}
EXTRA_SECTION_MODELS = (LOGIT_ADJUSTED_MODEL,)  # reported after Q2 when their folder exists
SUBQUESTION_FIGURES = {
    "a": (("histogram_precision.png", "predictions per class, with precision"),
          ("histogram_recall.png", "predictions per class, with recall")),
    "b": (("confusion_matrix.png", "confusion matrix, most predicted class first"),),
}
SUBQUESTION_TOPICS = {"a": "prediction histograms", "b": "confusion matrix",
                      "c": "nearest class centroids"}
LAMBDA_SWEEP_FIGURE = "la_sweep.png"
PRIOR_FILE = "prior.json"
COMPARISON_FIGURE = "comparison.png"
NOT_AVAILABLE = "n/a"


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


@dataclass
class Image:
    path: str  # relative to OUT
    caption: str


@dataclass
class Section:
    title: str  # e.g. "Q1(a)": what the grader looks for
    subtitle: str = ""
    blocks: list = field(default_factory=list)


@dataclass
class Run:
    """One OUT/<model> folder; metrics is None until the run has been analysed."""
    model: str
    directory: Path
    metrics: dict = None
    centroids: dict = None
    prior: dict = None

    @property
    def title(self):
        return MODEL_TITLES.get(self.model, self.model)


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
                                ("prior", PRIOR_FILE)):
            if (directory / name).is_file():
                setattr(run, attribute, read_json(directory / name, f"{model}'s {name}"))
        runs[model] = run
    if not any(run.metrics for run in runs.values()):
        raise UserError(f"{out_dir} holds no analysed run (none of "
                                f"{', '.join(m + '/metrics.json' for m in RUN_MODELS)}); run "
                                f"`python starter.py --model clip --out {shlex.quote(str(out_dir))}` first.")
    return runs


def run_command(model, out_dir, from_cache=False):
    """The command that (re)creates OUT/<model>'s outputs."""
    return (f"python starter.py --model {model}" + (" --from-cache" if from_cache else "")
            + f" --out {shlex.quote(str(out_dir))}")


def missing_run_note(model, out_dir):
    has_cache = (Path(out_dir) / model / "predictions.npz").is_file()
    return Text(f"No results for {model} yet: run `{run_command(model, out_dir, has_cache)}`, "
                f"then `python starter.py --report --out {shlex.quote(str(out_dir))}` again.", "note")


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


def run_measures(run_metrics):
    """Accuracies, macro-F1 and prediction-count imbalance of one run, from its metrics.json."""
    _, _, true_counts, predicted_counts, recall = class_arrays(run_metrics)
    # metrics.json keeps recall = TP / images; TP is recovered exactly by rounding.
    true_positives = np.rint(np.nan_to_num(recall) * true_counts)
    return {"num_images": run_metrics["num_images"], "accuracy": run_metrics["accuracy"],
            "top5_accuracy": run_metrics["top5_accuracy"],
            "balanced_accuracy": run_metrics["balanced_accuracy"],
            "macro_f1": metrics.macro_f1(true_positives, true_counts, predicted_counts),
            "balanced_count": float(predicted_counts.sum() / len(predicted_counts)),
            **metrics.prediction_imbalance(predicted_counts)}


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
}
SUMMARY_COLUMNS = tuple(MEASURE_COLUMNS)
COMPARISON_COLUMNS = ("accuracy", "balanced acc.", "macro-F1", "max/min count", "count std",
                      "KL to uniform (nats)", "classes < N/(2K)")
MEASURE_NOTE = ("macro-F1: mean F1 over the classes with images (as sklearn's f1_score, "
                "average='macro', zero_division=0). Imbalance of the predicted counts over the K "
                "classes: max/min count = most over least predicted class's count, inf when a class "
                "gets no prediction; count std = population standard deviation (ddof=0); KL to "
                "uniform = sum p log(pK) of the predicted-class distribution p, in nats (0 = balanced, "
                "log K = one class takes everything); classes < N/(2K) = classes predicted fewer "
                "than half the balanced count N/K.")


def measures_table(runs, columns, caption):
    rows = []
    for model, run in runs.items():
        if run.metrics is None:
            continue
        measures = run_measures(run.metrics)
        cells = [model]
        for column in columns:
            key, formatter = MEASURE_COLUMNS[column]
            cells.append(format_ratio(measures[key], measures["classes_without_predictions"])
                         if formatter is None else formatter(measures[key]))
        rows.append(cells)
    return Table(["run", *columns], rows, caption)


def provenance_table(runs):
    """What produced each run: its settings (weights, prompts or branch, data, device...)."""
    rows = []
    for model, run in runs.items():
        if run.metrics is None:
            rows.append([model, "status", "not analysed yet"])
            continue
        rows.append([model, "model", run.title])
        for key, value in run.metrics.get("settings", {}).items():
            if key != "model":
                rows.append([model, key, str(value)])
        rows.append([model, "images", f"{run.metrics['num_images']} in "
                                      f"{len(run.metrics['classes'])} classes"])
    return Table(["run", "setting", "value"], rows, "What produced the results")


def title_section(runs, out_dir, generated):
    missing = [model for model in QUESTION_OF_MODEL if runs.get(model) is None
               or runs[model].metrics is None]
    blocks = [Text("Name: ________________   Student ID: ____________   Date of submission: ________"),
              Text(f"Generated {generated} by `python starter.py --report` from the runs in "
                   f"{out_dir}: {', '.join(m for m, r in runs.items() if r.metrics) or 'none'}."),
              provenance_table(runs),
              measures_table(runs, SUMMARY_COLUMNS, "Summary"),
              Text(MEASURE_NOTE, "note")]
    blocks += [missing_run_note(model, out_dir) for model in missing]
    return Section("Homework 3: classification with imbalanced pseudo-labels",
                   "CLIP RN50 zero-shot vs DebiasPL on ImageNet100", blocks)


def figure_blocks(run, names_and_captions, out_dir):
    """An Image per existing PNG, or a note with the command that draws it."""
    blocks = []
    for name, caption in names_and_captions:
        if (run.directory / name).is_file():
            blocks.append(Image(f"{run.model}/{name}", f"{run.title}: {caption}"))
        else:
            blocks.append(Text(f"{run.model}/{name} is missing: run "
                               f"`{run_command(run.model, out_dir, from_cache=True)}`.", "note"))
    return blocks


def neighbour_table(query, class_entries):
    """One centroid query as a table: its 10 nearest classes, most cosine-similar first."""
    entry = class_entries[query["wnid"]]
    caption = (f"{query['role']}: {query['name']} ({query['wnid']}), {entry['predicted_count']} "
               f"predictions, {entry['true_count']} images")
    rows = [[str(rank), n["name"], n["wnid"], format_number(n["cosine"])]
            for rank, n in enumerate(query["neighbors"], start=1)]
    return Table(["rank", "class", "wnid", "cosine"], rows, caption)


def centroid_blocks(run, out_dir):
    """Both groupings, by_predicted first: per query its ordered classes and cosine vector."""
    if run.centroids is None:
        return [Text(f"{run.model}/centroids.json is missing: run "
                     f"`{run_command(run.model, out_dir, from_cache=True)}`.", "note")]
    class_entries = {entry["wnid"]: entry for entry in run.metrics["classes"]}
    blocks = []
    for grouping, (grouped_by, _) in analysis.GROUPINGS.items():
        blocks.append(Text(f"{grouping}: class centroids = mean logit vector of the images grouped "
                           f"by {grouped_by}; cosine similarity of centroids", "subheading"))
        for query in run.centroids.get(grouping, {}).get("queries", []):
            table = neighbour_table(query, class_entries)
            if query["neighbors"]:
                blocks.append(table)
                blocks.append(Text("cosine vector: [" + ", ".join(
                    format_number(n["cosine"]) for n in query["neighbors"]) + "]", "note"))
            else:
                blocks.append(Text(f"{table.caption}: {query.get('note', 'no neighbours')}.", "note"))
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


def question_sections(model, runs, out_dir):
    """Sections Q?(a), Q?(b), Q?(c) of one question; notes with the command when not run."""
    question = QUESTION_OF_MODEL[model]
    title = MODEL_TITLES.get(model, model)
    run = runs.get(model)
    sections = []
    for letter, topic in SUBQUESTION_TOPICS.items():
        section = Section(f"{question}({letter})", f"{title}: {topic}")
        if run is None or run.metrics is None:
            section.blocks.append(missing_run_note(model, out_dir))
        elif letter == "c":
            section.blocks += centroid_blocks(run, out_dir)
        else:
            section.blocks += stale_order_notes(run, runs, out_dir)
            section.blocks += figure_blocks(run, SUBQUESTION_FIGURES[letter], out_dir)
        sections.append(section)
    return sections


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


def extra_section(model, runs, out_dir):
    """A run beyond the homework's questions (clip-la): the same figures and tables, plus its
    prior and λ sweep when present."""
    run = runs[model]
    section = Section(model, run.title)
    if run.metrics is None:
        section.blocks.append(missing_run_note(model, out_dir))
        return section
    section.blocks += stale_order_notes(run, runs, out_dir)
    for letter in ("a", "b"):
        section.blocks += figure_blocks(run, SUBQUESTION_FIGURES[letter], out_dir)
    if (run.directory / LAMBDA_SWEEP_FIGURE).is_file():
        section.blocks.append(Image(f"{model}/{LAMBDA_SWEEP_FIGURE}",
                                    f"{run.title}: accuracy against the adjustment strength"))
    if run.prior is not None:
        section.blocks += json_tables(run.prior, f"{model}/{PRIOR_FILE}")
    section.blocks += centroid_blocks(run, out_dir)
    return section


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
                      float(counts.sum() / len(counts)))


def draw_comparison(comparison):
    return plotting.comparison_figure(
        comparison.names, comparison.predicted_counts, comparison.recall_changes,
        comparison.balanced_count, REFERENCE_MODEL,
        title=f"Predictions per class and recall change, classes in {REFERENCE_MODEL}'s order")


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


def training_free_share(runs):
    """The homework's underlying question in one paragraph: how much of DebiasPL's change over
    clip does clip-la, with no training, already reach? None until all three runs exist."""
    models = (REFERENCE_MODEL, "debiaspl", LOGIT_ADJUSTED_MODEL)
    if not all(model in runs and runs[model].metrics for model in models):
        return None
    clip, debiaspl, adjusted = (run_measures(runs[model].metrics) for model in models)
    sentences = []
    for key, label in (("accuracy", "accuracy"), ("balanced_accuracy", "balanced accuracy"),
                       ("macro_f1", "macro-F1"), ("kl_from_uniform", "KL divergence from uniform")):
        trained, free = debiaspl[key] - clip[key], adjusted[key] - clip[key]
        share = f" ({free / trained:.0%} of DebiasPL's change)" if abs(trained) > 1e-12 else ""
        sentences.append(f"{label}: DebiasPL {trained:+.4f}, clip-la {free:+.4f}{share}")
    return Text("Change against clip, DebiasPL (trained) vs clip-la (training-free logit "
                "adjustment of clip's own logits). " + "; ".join(sentences) + ". DebiasPL is a "
                "separately trained ResNet-50, so its change mixes debiasing with everything "
                "else training does.")


def comparison_sections(runs, comparison, out_dir):
    section = Section("Comparison", "all runs, classes in clip's order")
    if comparison is None:
        section.blocks.append(missing_run_note(REFERENCE_MODEL, out_dir))
        return [section]
    section.blocks += [
        Image(COMPARISON_FIGURE, "predictions per class of every run (top) and recall change "
                                 f"against {REFERENCE_MODEL} (bottom)"),
        measures_table(runs, COMPARISON_COLUMNS, "Accuracy and prediction-count imbalance"),
        Text(MEASURE_NOTE, "note")]
    share = training_free_share(runs)
    if share is not None:
        section.blocks.append(share)
    if len(comparison.predicted_counts) == 1:
        section.blocks.append(Text("Only clip has results: the other runs add their curves, "
                                   "columns and recall changes once they exist.", "note"))
    appendix = Section("Appendix", "per-class predicted counts and recall", [per_class_table(comparison)])
    return [section, appendix]


def build_sections(runs, comparison, out_dir, generated):
    """The whole report as data: title page, Q1(a)..Q2(c), extra runs, comparison, appendix."""
    sections = [title_section(runs, out_dir, generated)]
    for model in QUESTION_OF_MODEL:
        sections += question_sections(model, runs, out_dir)
    sections += [extra_section(model, runs, out_dir)
                 for model in EXTRA_SECTION_MODELS if model in runs]
    return sections + comparison_sections(runs, comparison, out_dir)


# ---------------------------------------------------------------------------------------------
# Markdown

def markdown_cell(text):
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown_table(table):
    lines = [f"**{table.caption}**", ""] if table.caption else []
    lines.append("| " + " | ".join(markdown_cell(c) for c in table.columns) + " |")
    lines.append("|" + "---|" * len(table.columns))
    lines += ["| " + " | ".join(markdown_cell(c) for c in row) + " |" for row in table.rows]
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
# PDF: A4 pages; text and tables flow on portrait pages, each figure gets a landscape page.

PORTRAIT = (8.27, 11.69)  # A4, inches
LANDSCAPE = (11.69, 8.27)
MARGIN = 0.6
FONT_SIZES = {"section": 14, "subheading": 10.5, "body": 9.5, "note": 8.5, "table": 8}
CHAR_WIDTH_EM = 0.6  # DejaVu Sans: 0.55 em on average, digits 0.64: to wrap before drawing
LINE_SPACING = 1.35
MIN_COLUMN_CHARS = 5
CELL_PADDING_CHARS = 2
BOLD_WIDTH_FACTOR = 1.15  # header cells are bold
MAX_IMAGE_PIXELS = 3000  # long side of a figure as embedded: ~250 dpi on an A4 page


def line_height(font_size):
    return font_size * LINE_SPACING / 72


def chars_per_width(width_inches, font_size):
    return max(int(width_inches * 72 / (font_size * CHAR_WIDTH_EM)), 1)


def wrap(text, width_chars):
    return [line for paragraph in str(text).split("\n")
            for line in (textwrap.wrap(paragraph, width_chars, break_long_words=True,
                                       break_on_hyphens=False) or [""])]


def column_widths(table, available_chars):
    """Characters per column: its longest cell, then, while too wide, the widest column shrunk,
    first no further than its longest word (cells wrap between words), then to MIN_COLUMN_CHARS."""
    def length(text, header):
        return int(np.ceil(BOLD_WIDTH_FACTOR * len(text))) if header else len(text)

    columns = [[(str(header), True), *((str(cell), False) for cell in cells)]
               for header, *cells in zip(table.columns, *table.rows)]
    widths = [max(MIN_COLUMN_CHARS, *(length(text, header) for text, header in column))
              for column in columns]
    longest_words = [max(MIN_COLUMN_CHARS, *(length(word, header) for text, header in column
                                             for word in text.split() or [""]))
                     for column in columns]
    for floors in (longest_words, [MIN_COLUMN_CHARS] * len(widths)):
        while sum(widths) > available_chars:
            shrinkable = [i for i, (width, floor) in enumerate(zip(widths, floors)) if width > floor]
            if not shrinkable:
                break
            widths[max(shrinkable, key=lambda i: widths[i])] -= 1
    return widths


def read_png(path):
    """RGB uint8 pixels, shrunk so that the PDF stays small yet zoomable."""
    with PILImage.open(path) as image:
        image = image.convert("RGB")
        image.thumbnail((MAX_IMAGE_PIXELS, MAX_IMAGE_PIXELS), PILImage.LANCZOS)
        return np.asarray(image)


class PdfLayout:
    """Places blocks top to bottom, starting a page when the next one does not fit."""

    def __init__(self, pdf, out_dir, footer):
        self.pdf, self.out_dir, self.footer = pdf, Path(out_dir), footer
        self.figure, self.cursor, self.page_number = None, 0.0, 0
        self.section_title, self.heading_pending = "", False

    # Pages. Coordinates are inches from the top-left corner.
    def finish_page(self):
        if self.figure is not None:
            self.figure.text(0.5, 0.25 / self.figure.get_figheight(),
                             f"{self.footer}   page {self.page_number}", ha="center",
                             fontsize=FONT_SIZES["note"], color="0.4")
            self.pdf.savefig(self.figure)
        self.figure = None

    def new_page(self, size):
        self.finish_page()
        self.figure = Figure(figsize=size)
        self.page_number += 1
        self.cursor = MARGIN
        title = self.section_title if self.heading_pending else f"{self.section_title} (continued)"
        self.draw_lines(wrap(title, chars_per_width(self.width, FONT_SIZES["section"])),
                        FONT_SIZES["section"], weight="bold")
        self.cursor += 0.1
        self.heading_pending = False

    @property
    def width(self):
        return self.figure.get_figwidth() - 2 * MARGIN

    def room(self):
        return self.figure.get_figheight() - MARGIN - self.cursor

    def ensure_room(self, height):
        """A portrait page with `height` inches left: the current one if it has them."""
        if self.figure is None or self.figure.get_figwidth() != PORTRAIT[0] or self.room() < height:
            self.new_page(PORTRAIT)

    def to_figure(self, x, y):
        """Figure fraction of (x, y) inches from the top-left corner."""
        return x / self.figure.get_figwidth(), 1 - y / self.figure.get_figheight()

    def draw_lines(self, lines, font_size, **text_style):
        # zorder below the axes: drawn first, so the PDF's text follows the reading order.
        self.figure.text(*self.to_figure(MARGIN, self.cursor), "\n".join(lines), va="top",
                         fontsize=font_size, linespacing=LINE_SPACING, zorder=-1, **text_style)
        self.cursor += len(lines) * line_height(font_size) + 0.08

    # Blocks
    def start_section(self, section):
        """The section's first block opens its page, headed by the section's title."""
        self.finish_page()
        self.section_title = section.title + (f":  {section.subtitle}" if section.subtitle else "")
        self.heading_pending = True

    def add_text(self, block):
        font_size = FONT_SIZES[block.style]
        lines = wrap(block.text, chars_per_width(self.width if self.figure else
                                                 PORTRAIT[0] - 2 * MARGIN, font_size))
        self.ensure_room(len(lines) * line_height(font_size))
        style = {"subheading": {"weight": "bold"}, "note": {"style": "italic", "color": "0.25"}}
        self.draw_lines(lines, font_size, **style.get(block.style, {}))

    def add_image(self, block):
        pixels = read_png(self.out_dir / block.path)
        # Wide figures (histograms) on landscape pages, squarish ones (confusion) on portrait.
        self.new_page(LANDSCAPE if pixels.shape[1] > 1.2 * pixels.shape[0] else PORTRAIT)
        self.draw_lines(wrap(f"{block.caption}  ({block.path})",
                             chars_per_width(self.width, FONT_SIZES["body"])), FONT_SIZES["body"])
        bottom = MARGIN + 0.2  # leaves the footer free
        left, top = self.to_figure(MARGIN, self.cursor)
        _, bottom_fraction = self.to_figure(0, self.figure.get_figheight() - bottom)
        ax = self.figure.add_axes((left, bottom_fraction, self.width / self.figure.get_figwidth(),
                                   top - bottom_fraction))
        # interpolation="none" embeds the pixels as they are: the page can be zoomed into.
        ax.imshow(pixels, interpolation="none")
        ax.set_anchor("N")
        ax.set_axis_off()
        self.cursor = self.figure.get_figheight()  # the figure fills its page

    def add_table(self, table):
        font_size = FONT_SIZES["table"]
        available = chars_per_width(PORTRAIT[0] - 2 * MARGIN, font_size) - CELL_PADDING_CHARS * len(table.columns)
        widths = column_widths(table, available)
        # As wide as its contents (plus padding), at most the page's width.
        width = (sum(widths) + CELL_PADDING_CHARS * len(widths)) * font_size * CHAR_WIDTH_EM / 72
        wrapped = [[wrap(cell, chars) for cell, chars in zip(row, widths)]
                   for row in [table.columns, *table.rows]]
        # One line of padding per row, as in matplotlib's cells.
        heights = [(max(len(cell) for cell in row) + 0.6) * line_height(font_size) for row in wrapped]
        caption_height = line_height(FONT_SIZES["body"]) + 0.08
        remaining = list(range(1, len(wrapped)))
        continued = False
        while remaining or not continued:
            self.ensure_room(caption_height + heights[0] + (heights[remaining[0]] if remaining else 0))
            fitting = []
            used = caption_height + heights[0]
            for row in remaining:
                if used + heights[row] > self.room():
                    break
                fitting.append(row)
                used += heights[row]
            if not fitting and remaining:  # a row taller than a page: give it one anyway
                fitting = remaining[:1]
            if table.caption:
                self.draw_lines([table.caption + (" (continued)" if continued else "")],
                                FONT_SIZES["body"], weight="bold")
            self.draw_table_rows([wrapped[0]] + [wrapped[r] for r in fitting],
                                 [heights[0]] + [heights[r] for r in fitting], widths, width)
            remaining = remaining[len(fitting):]
            continued = True

    def draw_table_rows(self, rows, heights, widths, width):
        height = sum(heights)
        left, top = self.to_figure(MARGIN, self.cursor)
        ax = self.figure.add_axes((left, top - height / self.figure.get_figheight(),
                                   width / self.figure.get_figwidth(), height / self.figure.get_figheight()))
        ax.set_axis_off()
        cells = [["\n".join(lines) for lines in row] for row in rows]
        # bbox fills the axes; rows keep their relative heights, columns their relative widths.
        drawn = ax.table(cellText=cells[1:] or None, colLabels=cells[0], cellLoc="left",
                         bbox=(0, 0, 1, 1))
        drawn.auto_set_font_size(False)
        drawn.set_fontsize(FONT_SIZES["table"])
        padded = [chars + CELL_PADDING_CHARS for chars in widths]
        for (row, column), cell in drawn.get_celld().items():
            cell.set_width(padded[column] / sum(padded))
            cell.PAD = 0.5 * CELL_PADDING_CHARS / padded[column]  # Cell.PAD is a fraction of its width
            cell.set_height(heights[row] / height)
            cell.set_linewidth(0.4)
            if row == 0:
                cell.set_facecolor("0.9")
                cell.get_text().set_fontweight("bold")
        self.cursor += height + 0.15


def render_pdf(sections, out_dir, file, footer):
    """Write the sections as a PDF to the binary `file`."""
    # TrueType fonts (not Type 3) keep the text selectable and searchable.
    with matplotlib.rc_context({"pdf.fonttype": 42}), PdfPages(file, metadata={
            "Title": sections[0].title, "Subject": sections[0].subtitle}) as pdf:
        layout = PdfLayout(pdf, out_dir, footer)
        for section in sections:
            layout.start_section(section)
            for block in section.blocks:
                {Text: layout.add_text, Table: layout.add_table, Image: layout.add_image}[type(block)](block)
        layout.finish_page()


# ---------------------------------------------------------------------------------------------

def write_report(out_dir):
    """Write OUT/comparison.png (when clip has run), OUT/report.pdf and OUT/report.md."""
    out_dir = Path(out_dir)
    runs = load_runs(out_dir)
    comparison = comparison_data(runs)
    if comparison is not None:
        write_figure(out_dir / COMPARISON_FIGURE, draw_comparison(comparison))
    generated = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    sections = build_sections(runs, comparison, out_dir, generated)
    footer = f"Homework 3 report, generated {generated}"
    write_atomic(out_dir / "report.pdf", lambda f: render_pdf(sections, out_dir, f, footer))
    write_atomic(out_dir / "report.md", lambda f: f.write(render_markdown(sections).encode()))
    return out_dir / "report.pdf", out_dir / "report.md"
