"""The whole report as Sections: the title page, Q1(a) to Q2(c), the training-free runs, the
comparison, the Why section and, with --appendix, the appendix."""
import numpy as np

from runs import QUESTION_OF_MODEL, REFERENCE_MODEL, SIMULATED

from .comparison import comparison_section, per_class_table
from .content import Section, Table, Text, missing_run_note, outdated_note
from .measures import MEASURE_NOTE, SUMMARY_COLUMNS, measures_table, provenance_table, true_positives
from .questions import SUBQUESTION_TOPICS, centroid_blocks, figure_blocks, question_sections, subquestion_blocks
from .run_folders import extra_models
from .why_section import why_section


# What a training-free run (one beyond the homework's questions) adds to its section: figures
# beside the standard ones, and JSON files shown in the appendix.
EXTRA_RUN_FIGURES = {"clip-la": (("la_sweep.png", "accuracy and balanced accuracy against the "
                                                  "adjustment strength λ"),)}


PSEUDO_LABEL_FIGURE = "pseudo_labels.png"


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
