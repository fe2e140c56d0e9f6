"""The explorer's plotly figures, as JSON for the page: the predictions per class of each run, the
confusion matrix's axes and colour scale (the page fills in each run's cells), the runs against
clip, and each run's pseudo-label selection with plotly's own sliders for τ and k.

Plotly renders a subset of HTML in labels and hover text, so every string from a run's files
goes through plotly_text (plotly shows `&lt;script&gt;` as the text `<script>`).
"""
import html
import json
from collections import Counter

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analysis.pseudo_labels import TRAINING_THRESHOLD

COLORS = ("#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860")
PRECISION_COLOR, RECALL_COLOR = "#C44E52", "#55A868"
CORRECT_COLOR, WRONG_COLOR = "#55A868", "#C44E52"
LOG_COLOR_SCALE = "Viridis"
UPL_K = 16  # the class-balanced top-k shown first: UPL's 16 pseudo-labels per class


def class_labels(names, wnids):
    """The classes' category labels on every axis: the name, with the wnid where another class has
    the same name (ImageNet-1k has two cranes), HTML-escaped."""
    repeats = Counter(names)
    return [plotly_text(name if repeats[name] == 1 else f"{name} ({wnid})")
            for name, wnid in zip(names, wnids)]


def plotly_text(text):
    """`text` as plotly shows it literally: its markup characters as the entities plotly decodes
    (it decodes no &quot;, and quotes outside a tag are plain text)."""
    return html.escape(text, quote=False)


def as_json(figure):
    """The figure as plain JSON (numeric arrays as plotly's base64 typed arrays)."""
    return json.loads(figure.to_json())


# Room for the class names under (or beside) a plot: fixed, since plotly's automargin draws a
# plot twice (0.4 s of the first view at 1,000 classes).
NAME_MARGIN = 170


def class_axis(title):
    """A categorical class axis: plotly shows as many names as fit and all of them when zoomed."""
    return {"title": {"text": title, "standoff": 4}, "type": "category", "tickangle": -60,
            "tickfont": {"size": 9}}


def shown(value, decimals=3):
    return "undefined" if value is None else f"{value:.{decimals}f}"


def histogram(run, labels, wnids):
    """View 1: a run's predicted count per class in the reference order, precision and recall on a
    second axis and the balanced count as a line; hovering gives every number of the class."""
    customdata = [[plotly_text(wnid), predicted, true, shown(p), shown(r)]
                  for wnid, predicted, true, p, r in zip(wnids, run["predicted"], run["true"],
                                                         run["precision"], run["recall"])]
    hover = ("<b>%{x}</b> (%{customdata[0]})<br>predicted: %{customdata[1]}<br>images (true): "
             "%{customdata[2]}<br>precision: %{customdata[3]}<br>recall: %{customdata[4]}"
             "<extra></extra>")
    figure = go.Figure()
    figure.add_bar(x=labels, y=run["predicted"], name="predictions", marker_color=COLORS[0],
                   customdata=customdata, hovertemplate=hover)
    for quantity, color in (("precision", PRECISION_COLOR), ("recall", RECALL_COLOR)):
        figure.add_scatter(x=labels, y=run[quantity], name=quantity, yaxis="y2", mode="markers",
                           marker={"color": color, "size": 5}, customdata=customdata,
                           hovertemplate=hover)
    balanced = sum(run["true"]) / len(run["true"])
    figure.add_hline(y=balanced, line_dash="dash", line_color="#555",
                     annotation_text=f"balanced: {balanced:.4g}", annotation_position="top right")
    figure.update_layout(
        xaxis=class_axis("class"), yaxis={"title": {"text": "predictions (pseudo-labels)"}},
        yaxis2={"title": {"text": "precision / recall"}, "overlaying": "y", "side": "right",
                "range": [0, 1.02], "tickmode": "linear", "dtick": 0.2, "showgrid": False},
        legend={"orientation": "h", "y": 1.02, "x": 0, "yanchor": "bottom"},
        bargap=0.1, margin={"t": 30, "b": NAME_MARGIN}, height=620, hovermode="closest")
    return as_json(figure)


def confusion_template(labels):
    """View 2 without its cells: the axes (true class down, predicted across, reference order),
    the log colour scale's ticks and the hover text; the page puts log10(count) in z and the
    count in customdata for the chosen run."""
    figure = go.Figure(go.Heatmap(
        x=labels, y=labels, colorscale=LOG_COLOR_SCALE, zmin=0, hoverongaps=False,
        colorbar={"title": {"text": "images"}},
        hovertemplate="true: <b>%{y}</b><br>predicted: <b>%{x}</b><br>images: %{customdata}"
                      "<extra></extra>"))
    figure.update_layout(
        xaxis={**class_axis("predicted class"), "showgrid": False},
        yaxis={**class_axis("true class"), "autorange": "reversed", "tickangle": 0, "showgrid": False},
        plot_bgcolor="#f4f4f4", margin={"t": 20, "b": NAME_MARGIN, "l": NAME_MARGIN}, height=900,
        hovermode="closest")
    return as_json(figure)


def comparison(runs, labels, reference):
    """View 4: per class, each run's predicted count and recall minus the reference run's."""
    figure = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                           subplot_titles=(f"predictions minus {plotly_text(reference['model'])}'s",
                                           f"recall minus {plotly_text(reference['model'])}'s"))
    for index, run in enumerate(runs):
        if run is reference:
            continue
        for row, quantity in ((1, "predicted"), (2, "recall")):
            change = [None if mine is None or theirs is None else mine - theirs
                      for mine, theirs in zip(run[quantity], reference[quantity])]
            figure.add_scatter(x=labels, y=change, row=row, col=1, mode="markers",
                               name=plotly_text(run["model"]), legendgroup=run["model"],
                               showlegend=row == 1, marker={"color": COLORS[index % len(COLORS)],
                                                            "size": 5},
                               hovertemplate=f"<b>%{{x}}</b><br>{plotly_text(run['model'])}: "
                                             f"%{{y:+.3~f}}<extra></extra>")
    figure.add_hline(y=0, line_color="#888", row="all", col=1)
    figure.update_layout(
        hovermode="closest", height=760, margin={"t": 60, "b": NAME_MARGIN},
        legend={"orientation": "h", "y": 1.08, "x": 1, "xanchor": "right"})
    figure.update_xaxes(class_axis("class"), row=2, col=1)
    figure.update_xaxes(type="category", row=1, col=1)
    return as_json(figure)


SELECTION_RULES = (  # (pseudo_labels.json table, its key, count, share, rule, slider start)
    ("confidence_threshold", "threshold", "kept", "kept_share", "confidence threshold τ (FixMatch)",
     TRAINING_THRESHOLD),
    ("class_balanced_top_k", "k", "selected", "selected_share", "class-balanced top-k (UPL, FPL)",
     UPL_K),
)
# Paper coordinates of each rule's slider (above its plot) and its plot's y domain.
SELECTION_PLACES = ({"slider": 1.0, "domain": [0.6, 0.86]}, {"slider": 0.46, "domain": [0.0, 0.26]})


def selection_text(entry, rule):
    """The summary above a rule's plot: its value, the share kept and its accuracy."""
    table, key, count_key, share_key, title, _ = rule
    accuracy = "none kept" if entry["accuracy"] is None else f"{entry['accuracy']:.1%} correct"
    return (f"<b>{title} = {entry[key]:g}</b>: {entry[share_key]:.1%} of the images "
            f"({entry[count_key]:,}), {accuracy}")


def selection(labels, per_rule, selection_json):
    """View 5: per class, the pseudo-labels selected (correct and wrong) at a threshold τ chosen on
    a plotly slider (the thresholds of pseudo_labels.json), and by class-balanced top-k with a
    slider for k; above each, the share selected and its accuracy. per_rule: for each of
    SELECTION_RULES, ([steps, K] selected, [steps, K] of them correct)."""
    figure = make_subplots(rows=2, cols=1, shared_xaxes=True)
    sliders = []
    for row, (rule, (totals, corrects), place) in enumerate(
            zip(SELECTION_RULES, per_rule, SELECTION_PLACES), 1):
        table, key, _, _, _, start = rule
        entries = selection_json[table]["rows"]
        values = [entry[key] for entry in entries]
        active = values.index(start) if start in values else len(values) // 2
        annotation = f"annotations[{row - 1}].text"
        steps = [{"method": "update", "label": f"{value:g}",
                  "args": [{"y": [correct.tolist(), (total - correct).tolist()]},
                           {annotation: selection_text(entry, rule)}, [2 * row - 2, 2 * row - 1]]}
                 for value, entry, total, correct in zip(values, entries, totals, corrects)]
        for trace, (name, color) in enumerate((("correct", CORRECT_COLOR), ("wrong", WRONG_COLOR))):
            figure.add_bar(x=labels, y=steps[active]["args"][0]["y"][trace], name=name,
                           marker_color=color, row=row, col=1, legendgroup=name,
                           showlegend=row == 1,
                           hovertemplate=f"<b>%{{x}}</b><br>{name}: %{{y}}<extra></extra>")
        figure.add_annotation(text=steps[active]["args"][1][annotation], xref="paper",
                              yref="paper", x=0, y=place["domain"][1] + 0.01, showarrow=False,
                              xanchor="left", yanchor="bottom")
        figure.update_yaxes(domain=place["domain"], title_text="pseudo-labels", rangemode="tozero",
                            row=row, col=1)
        sliders.append({"active": active, "steps": steps, "y": place["slider"], "yanchor": "top",
                        "x": 0, "len": 1, "currentvalue": {"visible": False}, "pad": {"t": 0}})
    figure.update_layout(
        barmode="stack", hovermode="closest",
        height=960, margin={"t": 40, "b": NAME_MARGIN},
        legend={"orientation": "h", "y": 1.08, "x": 1, "xanchor": "right"})
    figure.update_xaxes(type="category", showticklabels=False, row=1, col=1)
    figure.update_xaxes(class_axis("class"), row=2, col=1)
    page_figure = as_json(figure)
    # Added after plotly's validation, which takes seconds over 1,000 classes' steps.
    page_figure["layout"]["sliders"] = sliders
    return page_figure
