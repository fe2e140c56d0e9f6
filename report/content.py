"""The report as data: Sections of Text, Table and Image blocks (tables hold already formatted
cells), which report.markdown and report.pdf render; and the formatting every section shares."""
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from runs.descriptors import SIMULATED
from runs.outputs import plural



NOT_AVAILABLE = "n/a"


SIMULATED_WARNING = f"{SIMULATED} (demo, not a real run)"  # heads each page of simulated results


@dataclass
class Text:
    text: str
    style: str = "body"  # body | small | subheading | note | bullet
    emphasis: bool = False  # the student's Markdown: **bold** and *italic* are rendered


@dataclass
class Table:
    columns: list
    rows: list  # lists of already formatted cells (str)
    caption: str = ""
    footer: str = ""  # lines separated by "\n"
    compact: bool = False  # small: the PDF may set it beside the next compact tables


@dataclass
class Image:
    path: str  # relative to OUT
    caption: str
    own_page: bool = False
    orientation: str = None  # "portrait" | "landscape"; None: whichever prints it larger
    fit_page: bool = False  # fitted so that the blocks after it, to the next page break, fit its page
    # draw(size) -> matplotlib Figure: the figure drawn anew, embedded in the PDF as vector
    # graphics (report.figure_sources); None: the PNG at `path` is placed.
    draw: object = None


@dataclass
class Section:
    title: str  # e.g. "Q1(a)": what the grader looks for
    subtitle: str = ""
    blocks: list = field(default_factory=list)
    new_page: bool = False


def missing_run_note(model, runs, out_dir):
    has_cache = (Path(out_dir) / model / "predictions.npz").is_file()
    return Text(f"No results for {model} yet: run `{runs.command(model, has_cache)}`, "
                f"then `{runs.commands.report()}` again.", "note")


def outdated_note(run, what):
    return Text(f"{run.model}'s {what} predates this version: run `{run.remake}` to add it.", "note")


def format_number(value, digits=4):
    """Fixed decimals; NOT_AVAILABLE for undefined values (None, NaN)."""
    if value is None or np.isnan(value):
        return NOT_AVAILABLE
    return f"{value:.{digits}f}"


def format_ratio(ratio, classes_without_predictions):
    """The max/min count ratio, saying why it is infinite instead of dividing by zero."""
    if np.isinf(ratio):
        verb = "has" if classes_without_predictions == 1 else "have"
        return f"inf: {plural(classes_without_predictions, 'class')} {verb} 0 predictions"
    return format_number(ratio, 2)
