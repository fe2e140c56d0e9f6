"""The appendix (--appendix): the comparison of every run, who steals from whom, per-class
numbers, the by-true-label centroids, the pseudo-label figures, the full Why section, what
produced each run, and the training-free runs' full answers and files."""
from string import ascii_uppercase

from runs.kinds import REFERENCE_MODEL, TRAINING_FREE, homework_questions

from .comparison import comparison_section, per_class_table
from .content import Section, Table, Text
from .measures import MEASURE_NOTE, provenance_table
from .questions import (SUBQUESTION_TOPICS, centered_view, centroid_answer, literal_note,
                        confusion_tables_section, figure_blocks, never_predicted_view,
                        subquestion_blocks)
from .run_folders import extra_models
from .why_section import why_section

# What a training-free run (one beyond the homework's questions) adds to its appendix: figures
# beside the standard ones, and its JSON files.
EXTRA_RUN_FIGURES = {"clip-la": (("la_sweep.png", "accuracy and balanced accuracy against the "
                                                  "adjustment strength λ"),)}
PSEUDO_LABEL_FIGURE = "pseudo_labels.png"


def settings_text(run):
    """A training-free run's own settings in one line (those of its source's cache are left out)."""
    settings = run.metrics.get("settings", {})
    parts = [f"{key} {value}" for name, group in settings.items()
             if isinstance(group, dict) and name not in ("source_meta", REFERENCE_MODEL)
             for key, value in group.items()]
    source = settings.get("source_run", REFERENCE_MODEL)
    return Text(f"{run.title}, training-free: it runs no model and changes {source}'s cached "
                "logits. Settings: " + (", ".join(parts) or "none recorded") + ".")


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


def by_true_section(runs, out_dir):
    """Every run's (c) with images grouped by their true label instead of their pseudo-label."""
    section = Section("Nearest centroids by true label", "(c) with each class's centroid the mean "
                                                         "logit vector of its images")
    for model, run in runs.items():
        if run.metrics is not None:
            label = f"{homework_questions().get(model, model)}(c) {model}, by true label"
            section.blocks += (centroid_answer(run, out_dir, label, "by_true")
                               + [literal_note({label: run}, "by_true")]
                               + never_predicted_view(run, label)
                               + centered_view(run, out_dir, label, "by_true"))
    return section


def run_section(model, runs, out_dir):
    """A run beyond the homework's questions (training-free, another model or dataset): its
    settings, own figures, (a), (b), (c) and files."""
    run = runs[model]
    section = Section(model, f"{run.title}: the homework's (a), (b), (c) and its files")
    if run.metrics is not None and run.descriptor["kind"] == TRAINING_FREE:
        section.blocks.append(settings_text(run))
        section.blocks += figure_blocks(run, EXTRA_RUN_FIGURES.get(run.made_by, ()), out_dir, model)
        for subquestion in SUBQUESTION_TOPICS:
            section.blocks += subquestion_blocks(run, runs, out_dir, subquestion,
                                                 f"{model} ({subquestion})")
    for name, content in run.files.items():
        section.blocks += json_tables(content, f"{model}/{name}")
    return section


def appendix_sections(runs, comparisons, out_dir, generated):
    """The appendix's sections, titled Appendix A, B, ... in order, the first on a new page."""
    comparison_parts = [comparison_section(runs, comparison, out_dir) for comparison in comparisons]
    comparison_parts[-1].blocks.append(Text(MEASURE_NOTE, "note"))
    selection = Section("Pseudo-labels", "pseudo-label selection of every run")
    for model, run in runs.items():
        if run.pseudo_labels is not None:
            selection.blocks += figure_blocks(run, ((PSEUDO_LABEL_FIGURE, "pseudo-label selection"),),
                                              out_dir, model)
    provenance = Section("Provenance", "what produced the results", [provenance_table(runs), Text(
        f"Generated {generated:%Y-%m-%d %H:%M %Z} by `{runs.commands.report()}` from the runs "
        f"in {out_dir}.", "note")])
    parts = [*comparison_parts, confusion_tables_section(runs, out_dir)]
    parts += [Section("Per class", f"predicted counts and recall on {comparison.label}, in "
                                   f"{comparison.reference}'s order", [per_class_table(comparison)])
              for comparison in comparisons]
    parts += [by_true_section(runs, out_dir), selection, why_section(runs, out_dir), provenance]
    parts += [run_section(model, runs, out_dir) for model in extra_models(runs)]
    for letter, section in zip(ascii_uppercase, parts):
        section.subtitle = f"{section.title}: {section.subtitle}"
        section.title = f"Appendix {letter}"
    parts[0].new_page = True
    return parts
