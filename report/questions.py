"""The homework's sub-questions (a), (b), (c) for one run: its figures, who steals from whom, and
the nearest class centroids."""
from analysis import run_analysis, terminal_text
from analysis.class_roles import AT_LEAST_ONCE, NEVER_PREDICTED, ZERO_PREDICTION_RULE, counts_text
from runs.kinds import homework_questions, run_kind

from .content import Image, Section, Table, Text, missing_run_note, outdated_note
from .hand_in import join_words
from .figure_sources import figure_drawer


HISTOGRAM_FIGURES = (("histogram_precision.png", "predictions per class, with precision"),
                     ("histogram_recall.png", "predictions per class, with recall"))

HAND_IN_NEIGHBOURS = 5  # page 5's secondary view: the nearest of the 10 that (c) asks for



def confusion_figure(run):
    """The confusion matrix's file and caption, which says whose order its rows and columns keep."""
    by = "" if run.metrics["order"] == run.metrics["own_order"] else \
        f" by {run.descriptor['order_reference']}"
    return "confusion_matrix.png", f"confusion matrix, rows and columns most to least predicted{by}"


SUBQUESTION_TOPICS = {"a": "prediction histograms", "b": "confusion matrix",
                      "c": "nearest class centroids"}


CROWDED_COSINE = 0.9  # literal cosines all above this "crowd near 1"
CENTERED_NOTE = ("Easier to read, not the homework's quantity: centered cosines, the same after "
                 "subtracting each image's mean logit over the classes, a shift that leaves the "
                 "softmax and every prediction unchanged, so they compare the part of the logits "
                 "that decides.")


def figure_blocks(run, names_and_captions, out_dir, label, titled=True, **layout):
    """An Image per existing PNG (laid out as `layout`: Image's fields), captioned with the run's
    title unless `titled` is False (a page's heading names it), or a note with the command that
    draws it."""
    blocks = []
    for name, caption in names_and_captions:
        if (run.directory / name).is_file():
            blocks.append(Image(f"{run.model}/{name}", f"{label}: {run.title + ', ' if titled else ''}{caption}",
                                draw=figure_drawer(run, name, out_dir), **layout))
        else:
            blocks.append(Text(f"{run.model}/{name} is missing: run "
                               f"`{run.remake}`.", "note"))
    return blocks


def class_confusion_tables(run, label, out_dir):
    """Q(a)'s who steals from whom: the classes feeding each most predicted class, where each
    least predicted class's images go."""
    if "class_confusions" not in run.metrics:
        return [outdated_note(run, "metrics.json (who steals from whom)")]
    class_entries = {entry["wnid"]: entry for entry in run.metrics["classes"]}
    tables = []
    for entry in run.metrics["class_confusions"]:
        if "predicted_counts" not in entry:
            return [outdated_note(run, "metrics.json (whose counts)")]
        incoming = entry["direction"] == "incoming"
        other = "true" if incoming else "predicted"
        rows = [[cell[other]["name"], str(cell["count"]), f"{cell['share_of_true']:.0%}"]
                for cell in entry["confusions"]] or [["none", "", ""]]
        tables.append(Table(
            ["from class" if incoming else "predicted as", "images", "of true class"], rows,
            f"{label} {entry['role']}: {entry['name']} ({counts_text(entry)}; "
            f"{class_entries[entry['wnid']]['true_count']} images) "
            + ("takes images of" if incoming else "loses images to"), compact=True))
    return tables


def top_confusion_table(run, label, out_dir, count=None):
    """Q(b)'s who steals from whom: the largest off-diagonal cells of the confusion matrix (the
    `count` largest; default all metrics.json lists)."""
    if "top_confusions" not in run.metrics:
        return [outdated_note(run, "metrics.json (who steals from whom)")]
    cells = run.metrics["top_confusions"][:count]
    rows = [[str(rank), cell["true"]["name"], cell["predicted"]["name"], str(cell["count"]),
             f"{cell['share_of_true']:.0%}"] for rank, cell in enumerate(cells, start=1)]
    return [Table(["#", "true class", "predicted as", "images", "of true class"], rows,
                  f"{label} who steals from whom: the {len(cells)} largest confusions "
                  "(off-diagonal cells of the confusion matrix)")]


def cosine_decimals(kind):
    """Decimals shown for the literal (kind None) or centered cosines, as in the terminal."""
    return {part: shown for part, _, shown in terminal_text.CENTROID_KINDS}[kind]


def centroid_queries(run, kind, grouping):
    """centroids.json's queries of one grouping, literal (kind None) or centered; [] when absent."""
    part = run.centroids if kind is None else run.centroids.get(kind, {})
    return part.get(grouping, {}).get("queries", [])


def vector_text(neighbours, decimals):
    return "[" + ", ".join(f"{n['cosine']:.{decimals}f}" for n in neighbours) + "]"


def grouping_words(grouping):
    return f"the images {'predicted as' if grouping == 'by_predicted' else 'labelled'} the class"


def answer_table(queries, label):
    """The answer to hand in: each queried class's 10 nearest class centroids by literal cosine,
    highest first, one class/cosine column pair per queried class; the footer gives each vector
    with each run's count of its class."""
    answered = [query for query in queries if query["neighbors"]]
    decimals = cosine_decimals(None)
    columns = ["#"]
    for query in answered:
        columns += [query["name"], "cosine"]
    rows = [[str(rank + 1), *(cell for query in answered for cell in (
        (query["neighbors"][rank]["name"], f"{query['neighbors'][rank]['cosine']:.{decimals}f}")
        if rank < len(query["neighbors"]) else ("", "")))]
        for rank in range(max(len(query["neighbors"]) for query in answered))]
    footer = "\n".join([f"{query['role']}, {query['name']}: " + vector_text(query["neighbors"], decimals)
                        for query in answered]
                       + ["predictions: " + "; ".join(f"{query['name']}: {counts_text(query)}"
                                                      for query in queries)])
    return Table(columns, rows, f"{label}: the 10 nearest class centroids by cosine, highest first",
                 footer)


def literal_note(labelled_runs, grouping="by_predicted"):
    """What (c)'s literal cosines are, in one note for the runs {label: run}; why they crowd near
    1, only for CLIP's logits and only where they do."""
    note = (f"{join_words(list(labelled_runs))}: literal cosines, as the homework asks, of the "
            f"class centroids (a class's centroid: the mean logit vector of "
            f"{grouping_words(grouping)}).")
    for label, run in labelled_runs.items():
        cosines = [n["cosine"] for query in centroid_queries(run, None, grouping)
                   for n in query["neighbors"]]
        if run.descriptor["clip"] and cosines and min(cosines) > CROWDED_COSINE:
            note += (f" {'They' if len(labelled_runs) == 1 else label + chr(39) + 's'} crowd near "
                     "1 because CLIP's logits are 100 × a cosine: every class scores about 20 to "
                     "30 on every image, and that offset, shared by all logits, dominates every "
                     "centroid.")
    return Text(note, "note")


def centroid_answer(run, out_dir, label, grouping="by_predicted"):
    """(c)'s answer: the literal nearest-centroid table, the zero-prediction rule where it
    applied, and notes for classes without a centroid."""
    if run.centroids is None:
        return [Text(f"{run.model}/centroids.json is missing: run "
                     f"`{run.remake}`.", "note")]
    queries = [query for query in centroid_queries(run, None, grouping)
               if not query["role"].startswith(NEVER_PREDICTED)]  # the secondary view's
    if not all("predicted_counts" in query for query in queries):
        return [outdated_note(run, "centroids.json (whose counts)")]
    blocks = [answer_table(queries, label)] if any(query["neighbors"] for query in queries) else []
    blocks += [Text(f"{label} {query['role']}: {query['name']} ({query['wnid']}): "
                    f"{query.get('note', 'no neighbours')}.", "note")
               for query in queries if not query["neighbors"]]
    set_aside = [f"{query['ranked_by']} never predicted "
                 f"{join_words([cls['name'] for cls in query['never_predicted']])}: "
                 f"{query['name']} answers as {query['role'].removesuffix(AT_LEAST_ONCE)}"
                 for query in queries if query.get("never_predicted")]
    if set_aside:
        blocks.append(Text(f"{label}: {ZERO_PREDICTION_RULE} Here {'; '.join(set_aside)}.", "note"))
    return blocks


def never_predicted_view(run, label, hand_in=False):
    """The secondary view of the classes the zero-prediction rule set aside: a line saying what
    it is, then each class's 10 nearest centroids by true label; hand_in: only the classes without
    a centroid in this run (Q2 follows Q1's classes although DebiasPL predicts them: the appendix
    has their lines), and their HAND_IN_NEIGHBOURS nearest, so that page 5 keeps its room."""
    if run.centroids is None:
        return []
    decimals = cosine_decimals(None)
    queries = [query for query in centroid_queries(run, None, "by_true")
               if query["role"].startswith(NEVER_PREDICTED) and query["neighbors"]
               and not (hand_in and query["predicted_counts"][run.model])]
    if not queries:
        return []
    shown = HAND_IN_NEIGHBOURS if hand_in else len(queries[0]["neighbors"])
    return [Text(f"{label}, secondary view of the classes {queries[0]['ranked_by']} never "
                 f"predicted: their {shown} nearest centroids by true label (literal cosines"
                 + ("; all 10 in centroids.json and the appendix" if hand_in else "") + "):", "note"),
            *(Text(f"{query['name']}: " + ", ".join(f"{n['name']} {n['cosine']:.{decimals}f}"
                                                   for n in query["neighbors"][:shown]), "small")
              for query in queries)]


def centered_view(run, out_dir, label, grouping="by_predicted"):
    """The secondary view: each queried class's 10 nearest centered centroids, one line each."""
    if run.centroids is None:
        return []
    if run_analysis.CENTERED not in run.centroids:
        return [outdated_note(run, "centroids.json (centered neighbours)")]
    decimals = cosine_decimals(run_analysis.CENTERED)
    return [Text(f"{label} {query['role']}: {query['name']}, centered: "
                 + ", ".join(f"{n['name']} {n['cosine']:.{decimals}f}" for n in query["neighbors"]),
                 "small")
            for query in centroid_queries(run, run_analysis.CENTERED, grouping) if query["neighbors"]]


def stale_order_notes(run, runs, out_dir):
    """A note when the run's figures follow another class order than its reference's current
    one (clip's for debiaspl, the source's for a training-free run), which happens when the
    reference is rerun after the run was analysed."""
    reference = runs.get(run.descriptor["order_reference"] or "")
    if reference is None or reference.metrics is None or run.metrics["order"] == reference.metrics["own_order"]:
        return []
    return [Text(f"{run.model}'s figures are not in {reference.model}'s current class order "
                 f"({reference.model} ran again after them): run "
                 f"`{run.remake}`.", "note")]


def subquestion_blocks(run, runs, out_dir, letter, label, hand_in=False):
    """The blocks answering (a), (b) or (c) for one run. hand_in: as the homework's pages print
    them: the figures portrait, a confusion matrix shrunk to share its page with (c), and
    without the who-steals-from-whom tables and (c)'s centered view, shown elsewhere."""
    if letter == "c":
        return centroid_answer(run, out_dir, label) + ([] if hand_in else [
            literal_note({label: run}), Text(CENTERED_NOTE, "note"), *centered_view(run, out_dir, label),
            *never_predicted_view(run, label)])
    blocks = stale_order_notes(run, runs, out_dir)
    layout = {"orientation": "portrait"} if hand_in else {}
    if letter == "a":
        return (blocks + figure_blocks(run, HISTOGRAM_FIGURES, out_dir, label, **layout)
                + ([] if hand_in else class_confusion_tables(run, label, out_dir)))
    if hand_in:
        return blocks + figure_blocks(run, (confusion_figure(run),), out_dir, label, titled=False,
                                      fit_page=True, **layout)
    return (blocks + figure_blocks(run, (confusion_figure(run),), out_dir, label, own_page=True)
            + top_confusion_table(run, label, out_dir))


def question_sections(model, runs, out_dir):
    """Sections Q?(a), Q?(b), Q?(c) of one question as handed in, (b) and (c) on a page of their
    own; notes with the command when not run."""
    question = homework_questions()[model]
    run = runs.get(model) if runs.get(model) and runs[model].question == question else None
    sections = []
    for letter, topic in SUBQUESTION_TOPICS.items():
        label = f"{question}({letter})"
        section = Section(label, f"{run_kind(model).title}: {topic}", new_page=letter == "b")
        if run is None or run.metrics is None:
            section.blocks.append(missing_run_note(model, runs, out_dir))
        else:
            section.blocks += subquestion_blocks(run, runs, out_dir, letter, label, hand_in=True)
        sections.append(section)
    return sections


def confusion_tables_section(runs, out_dir):
    """The homework's runs' who-steals-from-whom tables, (a)'s and (b)'s."""
    section = Section("Who steals from whom", "the classes behind Q1(a), Q1(b), Q2(a) and Q2(b)")
    for model, question in homework_questions().items():
        run = runs.get(model)
        if run is not None and run.metrics is not None:
            section.blocks += (class_confusion_tables(run, f"{question}(a)", out_dir)
                               + top_confusion_table(run, f"{question}(b)", out_dir))
    return section
