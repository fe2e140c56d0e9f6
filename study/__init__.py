"""The study across runs: OUT/study.pdf and study.md over every analysed run in OUT, with
OUT/runs.csv and classes.csv beside them. Written by `starter.py --report` next to the
homework's report.pdf (which is written only when the homework's runs are there).

What a researcher reads: one table of every run (model, weights, dataset, accuracy, how unevenly
it predicts, Figure 4's ρ, concept-mismatched classes), accuracy against imbalance, per dataset
whether every model over-predicts the same classes, and each run in brief with the causes of its
imbalance. It reads what the runs' analyses wrote (metrics.json, why.json, their PNGs), never
the logits, and lays the study out with the report's machinery (report.content, report.pdf,
report.markdown): the same blocks, the same renderers.
"""
from datetime import datetime
from pathlib import Path

from report.content import SIMULATED_WARNING
from report.markdown import render_markdown
from report.pdf import render_pdf
from report.why_section import run_diagnosis
from runs.descriptors import SIMULATED
from runs.outputs import write_atomic, write_figure

from .agreement import agreements as find_agreements
from .document import (IMBALANCE_FIGURE, LABEL_CHARACTERS, agreement_figure_name, build_sections,
                       run_label, study_title)
from .figures import agreement_figure, imbalance_figure
from .runs import study_runs
from .table import mismatched_classes, run_record, shown_kl
from .tidy import class_rows, write_tidy_tables

STUDY_FILE = "study.pdf"


def draw_imbalance(numbered, agreements):
    """Accuracy against imbalance, a point per run labelled by its number, grouped by dataset."""
    group_of = {run: agreement.label for agreement in agreements for run in agreement.runs}
    index_of = {record["run"]: index for index, record in enumerate(numbered.values())}
    records = list(numbered.values())
    simulated = all(record["simulated"] for record in records)
    return imbalance_figure(
        [str(number) for number in numbered], [group_of[record["run"]] for record in records],
        [r["accuracy"] for r in records], [r["balanced_accuracy"] for r in records],
        [shown_kl(r) for r in records], [r["gini"] for r in records],
        [index_of.get(record["source"]) for record in records],
        title=(f"{SIMULATED}: " if simulated else "") + "accuracy against prediction-count "
              "imbalance, one point per run")


def draw_agreement(agreement, numbers):
    return agreement_figure(
        agreement.rho, [run_label(numbers[run], run, LABEL_CHARACTERS) for run in agreement.runs],
        [str(numbers[run]) for run in agreement.runs],
        title=f"Spearman ρ of the predicted counts per class, {agreement.label}")


def page_warning(numbered):
    """The red line atop every page: all runs simulated, some, or none (None)."""
    simulated = sum(record["simulated"] for record in numbered.values())
    if simulated == 0:
        return None
    if simulated == len(numbered):
        return SIMULATED_WARNING
    return f"{simulated} of {len(numbered)} runs {SIMULATED} (marked in the first table)"


def write_study(out_dir, commands):
    """Write OUT/study.pdf, study.md, runs.csv, classes.csv and the study's figures (OUT/study-*.png)
    over every analysed run in OUT; return the paths of the four. `commands`
    (cli.commands.Commands) for the notes that suggest one."""
    out_dir = Path(out_dir)
    runs, not_analysed = study_runs(out_dir, commands)
    mismatched = {run_id: mismatched_classes(run, out_dir) for run_id, run in runs.items()}
    diagnoses = {run_id: run_diagnosis(run) for run_id, run in runs.items()}
    numbered = {number: run_record(run, mismatched[run_id])
                for number, (run_id, run) in enumerate(runs.items(), start=1)}
    numbers = {record["run"]: number for number, record in numbered.items()}
    agreements = find_agreements(runs)
    write_figure(out_dir / IMBALANCE_FIGURE, draw_imbalance(numbered, agreements))
    for agreement in agreements:
        if len(agreement.runs) > 2:
            write_figure(out_dir / agreement_figure_name(agreement), draw_agreement(agreement, numbers))
    sections = build_sections(out_dir, runs, not_analysed, numbered, agreements, diagnoses, mismatched)
    generated = datetime.now().astimezone()
    title = study_title(out_dir, numbered)
    footer = f"{title} (generated {generated:%Y-%m-%d %H:%M})"
    write_atomic(out_dir / STUDY_FILE, lambda file: render_pdf(sections, out_dir, file, title, footer,
                                                               page_warning(numbered)))
    write_atomic(out_dir / "study.md", lambda file: file.write(render_markdown(sections).encode()))
    return (out_dir / STUDY_FILE, out_dir / "study.md",
            *write_tidy_tables(out_dir, list(numbered.values()),
                               [class_rows(run, diagnoses[run_id], mismatched[run_id])
                                for run_id, run in runs.items()]))
