"""The homework's sub-questions (a), (b), (c) for one run: its figures, who steals from whom, and
the nearest class centroids."""
import analysis
from runs import MODEL_TITLES, QUESTION_OF_MODEL, REFERENCE_MODEL

from .content import Image, Section, Table, Text, missing_run_note, outdated_note
from .run_folders import run_command


HISTOGRAM_FIGURES = (("histogram_precision.png", "predictions per class, with precision"),
                     ("histogram_recall.png", "predictions per class, with recall"))


CONFUSION_FIGURE = ("confusion_matrix.png", "confusion matrix, rows and columns most to least "
                                            "predicted")


SUBQUESTION_TOPICS = {"a": "prediction histograms", "b": "confusion matrix",
                      "c": "nearest class centroids"}


CENTERING_NOTE = (
    "Literal: cosine of the classes' mean logit vectors, as the homework asks; these crowd near 1 "
    "because CLIP's logits are 100 × a cosine, so every class scores about 20 to 30 on every image "
    "and that large offset, shared by all logits, dominates every centroid. Centered: the same "
    "after subtracting each image's mean logit over the classes, a shift that leaves the softmax "
    "and every prediction unchanged, so these compare the part of the logits that decides.")


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
