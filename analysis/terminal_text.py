"""One run's answers as the terminal prints them, under the homework's sub-question labels, from
the files its analysis wrote (metrics.json, centroids.json, pseudo_labels.json). Every count
names its run (class_roles.counts_text)."""
from analysis import pseudo_labels
from analysis import why
from analysis.class_roles import NEVER_PREDICTED, ZERO_PREDICTION_RULE, counts_text, never_predicted_text
from analysis.run_analysis import CENTERED, NEIGHBOR_COUNT
from runs.descriptors import SIMULATED, is_simulated
from runs.kinds import homework_questions
from runs.outputs import plural

CENTROID_KINDS = (  # (centroids.json part, what the cosines are of, decimals shown)
    (None, "mean logits", 6),  # literal cosines may crowd near 1: 6 decimals tell them apart
    (CENTERED, "mean logits minus each image's mean logit", 4),
)


def format_selection(selection):
    """One line: the pseudo-labels kept at DebiasPL's training threshold."""
    row = pseudo_labels.at_threshold(selection)
    correct = "" if row["accuracy"] is None else f", {row['accuracy']:.1%} of them correct"
    return (f"pseudo-labels at confidence ≥ {row['threshold']:g}: {row['kept_share']:.1%} of images "
            f"kept ({row['kept']} of {selection['num_images']}){correct}, "
            f"{plural(row['classes_without_kept'], 'class', 'classes')} with none kept")


def centroid_queries(centroids, kind, grouping):
    """The queries of one grouping, literal (kind None) or centered."""
    return (centroids if kind is None else centroids[kind])[grouping]["queries"]


def format_neighbour_queries(queries, decimals):
    """Each role's class with each run's count of it, the never-predicted classes set aside for
    it, then its neighbours nearest first and their cosine vector."""
    lines = []
    for query in queries:
        lines.append(f"{query['role']}: {query['name']} ({query['wnid']}): {counts_text(query)}")
        if query.get("never_predicted"):
            lines.append(f"  {never_predicted_text(query)}")
        if query.get("note"):
            lines.append(f"  {query['note']}")
            continue
        lines.append("  classes: " + ", ".join(n["name"] for n in query["neighbors"]))
        lines.append("  cosine:  [" + ", ".join(f"{n['cosine']:.{decimals}f}"
                                                for n in query["neighbors"]) + "]")
    return lines


def format_centroid_answer(centroids, question):
    """Q(c) as the homework asks it, the answer to hand in first: the literal cosines of the
    centroids of the images grouped by predicted label (with the zero-prediction rule when it
    applied); then the centered view, and the never-predicted classes' by-true-label neighbours,
    secondary. The other by-true-label views are in centroids.json and the report's appendix."""
    (literal, _, literal_decimals), (centered, _, centered_decimals) = CENTROID_KINDS
    lines = [f"-- {question}(c) ANSWER: the {NEIGHBOR_COUNT} nearest class centroids, highest cosine "
             "first (centroid = mean logit vector of the images predicted as the class) --"]
    if "zero_prediction_rule" in centroids:
        lines.append(ZERO_PREDICTION_RULE)
    lines += format_neighbour_queries(centroid_queries(centroids, literal, "by_predicted"),
                                      literal_decimals)
    lines += [f"-- {question}(c), easier to read, not the homework's quantity: the same after "
              "subtracting each image's mean logit (predictions unchanged) --"]
    lines += format_neighbour_queries(centroid_queries(centroids, centered, "by_predicted"),
                                      centered_decimals)
    never = [query for query in centroid_queries(centroids, literal, "by_true")
             if query["role"].startswith(NEVER_PREDICTED)]
    if never:
        lines += [f"-- {question}(c), secondary view of the never-predicted classes: their "
                  f"{NEIGHBOR_COUNT} nearest centroids by true label (centroid = mean logit vector of "
                  "the images labelled the class) --"]
        lines += format_neighbour_queries(never, literal_decimals)
    return lines


def format_class_confusion(cell, incoming):
    """One cell of a role's confusions: where its images come from or go to."""
    other = cell["true" if incoming else "predicted"]
    return (f"{cell['count']:5d} {'from' if incoming else 'to'} {other['name']} ({other['wnid']}): "
            f"{cell['share_of_true']:.0%} of {cell['true']['name']}'s images")


def format_report(summary, centroids, selection):
    """What the homework report needs, as terminal text, under its sub-question labels."""
    by_wnid = {entry["wnid"]: entry for entry in summary["classes"]}
    question = homework_questions().get(summary["model"], "")
    simulated = f"{SIMULATED} " if is_simulated(summary["settings"]) else ""
    lines = [f"== {simulated}{summary['model']}: {summary['num_images']} images, {len(by_wnid)} classes ==",
             f"accuracy {summary['accuracy']:.4f}   top-5 {summary['top5_accuracy']:.4f}   "
             f"balanced accuracy {summary['balanced_accuracy']:.4f}",
             format_selection(selection),
             f"-- {question}(a) most and least predicted classes; who feeds the most predicted, "
             "where the least predicted's images go --"]
    for entry in summary["class_confusions"]:
        incoming = entry["direction"] == "incoming"
        lines.append(f"{entry['role']}: {entry['name']} ({entry['wnid']}): {counts_text(entry)}; "
                     f"{by_wnid[entry['wnid']]['true_count']} images; "
                     + ("it takes images of" if incoming else "its images go to"))
        lines += [f"  {format_class_confusion(cell, incoming)}" for cell in entry["confusions"]
                  ] or ["  no other class"]
    lines.append(f"-- {question}(b) the {len(summary['top_confusions'])} largest confusions, "
                 "true class -> predicted class --")
    lines += [f"{cell['count']:5d}  {cell['true']['name']} -> {cell['predicted']['name']} "
              f"({cell['share_of_true']:.0%} of its images)" for cell in summary["top_confusions"]]
    lines += format_centroid_answer(centroids, question)
    if "figure4_claim" in summary:  # metrics.json from before the test lacks it
        lines += why.figure4_lines(summary["figure4_claim"])
    return "\n".join(lines)
