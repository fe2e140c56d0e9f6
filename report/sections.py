"""The report as handed in: page 1 the student's details and Q1(a), then Q1(b)-Q1(c), Q2(a),
Q2(b)-Q2(c), each on its page, and page 5 the additional explanations (summary, training-free
runs, why, the student's notes); with --appendix, the appendix after them."""
import numpy as np

from runs.descriptors import SIMULATED, source_meta
from runs.kinds import REFERENCE_MODEL, TRAINING_FREE, homework_questions, run_kind

from .appendix import appendix_sections
from .comparison import TRAINING_FREE_NOTE, training_free_share
from .content import Section, Text, missing_run_note, outdated_note
from .hand_in import NOTES_HEADING, notes_blocks
from .measures import SUMMARY_COLUMNS, measures_table, true_positives, weights_cell
from .questions import (CENTERED_NOTE, centered_view, literal_note, never_predicted_view,
                        question_sections)
from .run_folders import extra_models
from .why_section import why_in_brief

HOMEWORK_TITLE = "Homework 3: classification with imbalanced pseudo-labels"
SUMMARY_NOTE = ("max/min count: most over least predicted class's count; KL to uniform: of the "
                "predicted-class distribution, in nats (0 = balanced); the appendix defines them all.")


NO_BREAK = "\u00a0"


def hand_in_line(hand_in):
    """Name, student ID and date of submission, or lines to write on. Each field's label and
    value are held together by no-break spaces, so that a line too long for the page (report.pdf
    shrinks it first, within limits) wraps between fields, never inside one, except within a
    name longer than a line."""
    student_id = (hand_in.student_id or "_" * 10).replace(" ", NO_BREAK)
    fields = [f"Name:{NO_BREAK}{hand_in.name or '_' * 20}", f"Student{NO_BREAK}ID:{NO_BREAK}{student_id}",
              f"Date{NO_BREAK}of{NO_BREAK}submission:{NO_BREAK}{hand_in.submission_date:%Y-%m-%d}"]
    return (NO_BREAK * 3 + " ").join(fields)  # a line breaks at the space, so none starts indented


def title_section(runs, out_dir, hand_in):
    """Page 1's top: the student's details, the homework, and what is missing or outdated."""
    simulated = any(run.simulated for run in runs.values())
    answered = " and ".join(f"{run_kind(model).title} ({question})"
                            for model, question in homework_questions().items())
    blocks = [Text((f"{SIMULATED}: " if simulated else "") + f"{HOMEWORK_TITLE}, {answered} on ImageNet100",
                   "subheading")]
    if simulated:
        blocks.append(Text(f"{SIMULATED}: these results come from simulated logits shaped like "
                           f"real runs (`{runs.commands.demo()}`), not from CLIP or DebiasPL: "
                           "they show what the report looks like, nothing about the models.", "note"))
    blocks += [missing_run_note(model, runs, out_dir) for model in homework_questions()
               if runs.get(model) is None or runs[model].metrics is None]
    blocks += [outdated_note(run, "metrics.json (true positives, for macro-F1)")
               for run in runs.values()
               if run.metrics is not None and np.isnan(true_positives(run.metrics)).any()]
    return Section(hand_in_line(hand_in), blocks=blocks)


def sources_text(runs):
    """Where each run's logits came from, in one line."""
    def source(settings):
        if source_meta(settings):
            return f"on {settings.get('source_run', REFERENCE_MODEL)}'s cached logits"
        return f"from {weights_cell(settings)}"
    return Text("Runs: " + "; ".join(f"{model} {source(run.metrics.get('settings', {}))}"
                                     for model, run in runs.items() if run.metrics is not None)
                + ".", "note")


def explanations_section(runs, out_dir, hand_in):
    """Page 5: the spec's optional additional explanations, and the student's notes."""
    blocks = [measures_table(runs, SUMMARY_COLUMNS, "Summary: accuracy and prediction-count "
                             "imbalance of every run"), Text(SUMMARY_NOTE, "note"), sources_text(runs)]
    extras = extra_models(runs)
    if extras:
        only_training_free = all(runs[model].descriptor["kind"] == TRAINING_FREE for model in extras)
        blocks.append(Text("Training-free runs" if only_training_free else "Other runs", "subheading"))
        blocks += [Text((training_free_share(runs, model) or Text(
            f"{model} ({runs[model].title}): its measures are in the summary table.")).text, "small")
            for model in extras] + [Text(TRAINING_FREE_NOTE, "note")]
    blocks.append(Text("Q1(c) and Q2(c): what the cosines are, and the centered ones", "subheading"))
    answered = {question: runs[model] for model, question in homework_questions().items()
                if runs.get(model) is not None and runs[model].metrics is not None
                and runs[model].centroids is not None}
    if answered:
        blocks += [literal_note({f"{question}(c)": run for question, run in answered.items()}),
                   Text(CENTERED_NOTE, "note")]
    for question, run in answered.items():
        blocks += centered_view(run, out_dir, f"{question}(c)")
    for question, run in answered.items():
        blocks += never_predicted_view(run, f"{question}(c)", hand_in=True)
    blocks.append(Text("Why the pseudo-labels are imbalanced, in brief", "subheading"))
    blocks += [Text(block.text, "small") if isinstance(block, Text) and block.style == "body" else block
               for block in why_in_brief(runs)]
    blocks.append(Text(NOTES_HEADING, "subheading"))
    blocks += (notes_blocks(hand_in.notes) if hand_in.notes else [Text(
        "No statement given: write one in a plain-text or Markdown file and pass it with "
        "--notes FILE.", "note")])
    return Section("Additional explanations", "the runs in brief, and what might be wrong",
                   blocks, new_page=True)


def build_sections(runs, comparisons, out_dir, hand_in, generated, appendix=False):
    """The whole report as data: Q1(a) to Q2(c) on pages 1-4, the explanations on page 5 and,
    when asked for, the appendix."""
    sections = [title_section(runs, out_dir, hand_in)]
    for number, model in enumerate(homework_questions()):
        questions = question_sections(model, runs, out_dir)
        questions[0].new_page = number > 0
        sections += questions
    sections.append(explanations_section(runs, out_dir, hand_in))
    return sections + (appendix_sections(runs, comparisons, out_dir, generated) if appendix else [])
