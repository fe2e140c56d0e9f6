"""The homework report, built from the run folders under OUT: OUT/report.pdf and OUT/report.md.

    starter.py --report [--name "..." --student-id "..."] [--appendix] [--out OUT]

Reads only what `starter.py --model ...` wrote (metrics.json, centroids.json, the PNGs and the
extra files of the training-free runs): no torch, no inference. Building is separate from
rendering: pure functions turn the runs into Sections of Text, Table and Image blocks
(report.content; report.sections assembles them), then report.pdf lays them out with reportlab
and report.markdown writes them as Markdown, so both documents show the same numbers.
OUT/comparison.png is drawn by plotting.comparison_figure.
"""
from datetime import datetime
from pathlib import Path

from runs.outputs import write_atomic, write_figure
from runs.descriptors import SIMULATED

from .comparison import (COMPARISON_FIGURE, PSEUDO_LABEL_THRESHOLDS, comparison_groups,
                         draw_comparison)
from .content import SIMULATED_WARNING, Image, Section, Table, Text
from .markdown import render_markdown
from .measures import SUMMARY_COLUMNS, run_measures
from .pdf import (CELL_PADDING, COMPACT_COLUMN_INCHES, FONT, paragraph_styles, register_fonts,
                  render_pdf, table_flowable)
from .questions import SUBQUESTION_TOPICS
from runs.loader import Run
from .run_folders import load_runs
from .hand_in import HAND_IN_FILE, HandIn, resolve_hand_in
from .sections import HOMEWORK_TITLE, build_sections


def write_report(out_dir, commands, name=None, student_id=None, date=None, notes=None, appendix=False):
    """Write OUT/comparison.png (clip's dataset) and a comparison-<run>.png for every other
    dataset's runs, OUT/report.pdf and OUT/report.md; return their paths. Nothing (and ()) when
    no homework run (Q1's clip, Q2's debiaspl) has been analysed: the study covers other runs.

    name, student_id, date (a datetime.date, of submission; default today) and notes (the path
    of a plain-text or Markdown file): None or "" means not given this time, and the ones given
    before, remembered in OUT/hand-in.json, are kept. `commands` (cli.commands.Commands) gives
    the commands its notes suggest."""
    out_dir = Path(out_dir)
    runs = load_runs(out_dir, commands)
    if not any(run.question and run.metrics for run in runs.values()):
        return ()
    hand_in = resolve_hand_in(out_dir, name, student_id, date, notes)
    comparisons = comparison_groups(runs)
    for comparison in comparisons:
        write_figure(out_dir / comparison.figure, draw_comparison(comparison))
    generated = datetime.now().astimezone()
    sections = build_sections(runs, comparisons, out_dir, hand_in, generated, appendix)
    simulated = any(run.simulated for run in runs.values())
    footer = ((f"{SIMULATED} " if simulated else "") + "Homework 3 report"
              + (f" of {hand_in.name}" if hand_in.name else "")
              + f", submitted {hand_in.submission_date:%Y-%m-%d} (generated {generated:%Y-%m-%d %H:%M})")
    title = (f"{SIMULATED}: " if simulated else "") + HOMEWORK_TITLE
    write_atomic(out_dir / "report.pdf",
                 lambda f: render_pdf(sections, out_dir, f, title, footer,
                                      SIMULATED_WARNING if simulated else None))
    write_atomic(out_dir / "report.md", lambda f: f.write(render_markdown(sections).encode()))
    return out_dir / "report.pdf", out_dir / "report.md"


# What starter.py and the tests use.
__all__ = ["CELL_PADDING", "COMPACT_COLUMN_INCHES", "COMPARISON_FIGURE", "FONT", "HAND_IN_FILE",
           "HandIn", "Image", "PSEUDO_LABEL_THRESHOLDS", "Run", "SUBQUESTION_TOPICS",
           "SUMMARY_COLUMNS", "Section", "Table", "Text", "comparison_groups", "draw_comparison",
           "load_runs", "paragraph_styles", "register_fonts", "run_measures", "table_flowable",
           "write_report"]
