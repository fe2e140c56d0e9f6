"""Figures for the homework: ordered prediction histograms, confusion matrices, the
logit-adjustment sweep of clip-la and the pseudo-label selection diagnostics.

Each function takes data already computed and already in display order, draws with matplotlib's
object API (no pyplot state, no GUI backend) and returns the Figure; the caller saves it.
Figures are drawn at the size report.pdf prints them on A4, so up to MAX_TICK_LABELS classes
every class name shows at its printed size. Past that (ImageNet-1k's 1,000 classes), no name
would be legible: class axes show ranks in the display order, and the prediction histograms add
two panels naming the END_CLASSES classes at each end (the most and least predicted).
"""
import functools

import matplotlib
import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.textpath import text_to_path

MAX_TICK_LABELS = 120
BAR_COLOR = "#4C72B0"
OVERLAY_COLOR = "#DD8452"
BALANCED_COLOR = "#C44E52"
TAKER_COLOR = "#8C1C13"  # marks a class taking images in a large confusion
LOSER_COLOR = "#8172B3"  # ... and one losing them
MARKED_COLOR = "#2CA02C"  # a histogram's marked classes (concept-mismatched ones)
# Figures are drawn at the size report.pdf prints them (the text frames of A4 pages), so their
# font sizes are the printed ones; past ~100 classes they grow, to be zoomed into on screen.
LANDSCAPE_WIDTH = 10.8  # inches: an A4 landscape page less its margins
PORTRAIT_WIDTH = 7.6  # an A4 portrait page less its margins
HISTOGRAM_HEIGHT = 5.0  # leaves room for a table under it on its page
RANKED_HISTOGRAM_HEIGHT = 6.6  # past MAX_TICK_LABELS classes: all of them above, both ends below
END_CLASSES = 20  # classes named at each end of a histogram of more than MAX_TICK_LABELS
COMPARISON_HEIGHT = 6.6
PSEUDO_LABEL_HEIGHT = 6.6  # a landscape page, with its heading and caption
CLASS_LABEL_MARGIN = 1.9  # inches of a confusion matrix's side taken by class names and axis title
COLORBAR_BESIDE = 0.7  # inches of a confusion matrix's width taken by a colour bar beside it
AXIS_TITLE_INCHES = 0.3  # an axis title and the ticks' length and padding
# The most a class name takes across its axis, so that long names (GTSRB's run to 50 characters)
# never squeeze the plot: they wrap, shrink (to MIN_NAME_FONT) and end in "…" (_class_labels).
# Every ImageNet-1k name (at most 37 characters) shows whole, on one line from 50 classes.
NAME_INCHES = 1.6
MIN_NAME_FONT = 6.0  # points
MAX_NAME_LINES = 3
LINE_SPACING = 1.2  # matplotlib's, in font sizes
ELLIPSIS = "…"
# A confusion matrix of more classes than MAX_TICK_LABELS: 2 pixels per cell of 1,000 at 200 dpi
# (a smaller image drops single confusions), its text sized to stay legible printed on A4.
RANKED_CONFUSION_WIDTH = 12.0


def _named(num_classes):
    """Whether a class axis of this many classes shows their names (else their ranks)."""
    return num_classes <= MAX_TICK_LABELS


def _set_class_ticks(axis, names, rotation, axis_inches, label=None):
    """Class names as tick labels in the largest font their spacing along the axis allows, each
    within NAME_INCHES across it, and `label` (if any) as the axis label. Past MAX_TICK_LABELS
    classes, ranks in the display order instead (1, then every power of ten below K: 100, 200,
    ... for 1,000), said in the label."""
    if _named(len(names)):
        size, labels = _class_labels(names, axis_inches)
        # "$" escaped: a name is text, never mathtext ("$\\frac$" would stop the drawing).
        axis.set_ticks(np.arange(len(names)), [label.replace("$", r"\$") for label in labels],
                       rotation=rotation, fontsize=size)
        if label:
            axis.set_label_text(label)
        return
    step = 10 ** int(np.log10(len(names) - 1))
    ranks = np.r_[1, np.arange(step, len(names) + 1, step)]
    axis.set_ticks(ranks - 1, [str(rank) for rank in ranks])
    axis.set_label_text(f"{label}: rank in this order" if label else "class rank in this order")


def _class_labels(names, axis_inches):
    """(font size, tick labels) of class names along an axis: the largest size, from what their
    spacing allows (_tick_font_size) down to MIN_NAME_FONT in half points, at which every name
    fits whole on the lines the spacing holds (_tick_labels); else MIN_NAME_FONT, the longest
    cut to "…". The full names are in metrics.json and the explorer."""
    largest = _tick_font_size(axis_inches, len(names))
    smallest = min(largest, MIN_NAME_FONT)
    spacing = axis_inches / len(names)
    for size in [*np.arange(largest, smallest, -0.5), smallest]:
        labels = _tick_labels(names, size, spacing)
        if all("".join(label.split()) == "".join(str(name).split()) for name, label in zip(names, labels)):
            break
    return float(size), labels


def _tick_labels(names, size, spacing_inches):
    """Each class name as a tick label of at most NAME_INCHES printed in `size` points: a longer
    one on as many lines as `spacing_inches` between ticks holds (MAX_NAME_LINES at most), its end
    cut to "…" where even those do not hold it."""
    lines = int(np.clip(spacing_inches * 72 // (LINE_SPACING * size), 1, MAX_NAME_LINES))
    return [_fitted_name(str(name), size, lines) for name in names]


@functools.lru_cache(maxsize=None)
def _character_points(character):
    """A character's advance in matplotlib's default font at 1 point."""
    return text_to_path.get_text_width_height_descent(character, FontProperties(size=100), False)[0] / 100


def _printed_points(text, size):
    """The width of `text` in `size` points: its characters' advances (kerning, a few percent,
    left out), so that fitting 100 long names costs milliseconds, not seconds."""
    return size * sum(map(_character_points, text))


def _fits(text, size):
    return _printed_points(text, size) <= NAME_INCHES * 72


def _fitted_name(name, size, lines):
    """`name` wrapped at spaces (a word longer than a line, at a character) into lines of at
    most NAME_INCHES, the last of `lines` ending in "…" if more would follow."""
    if _fits(name, size):
        return name
    wrapped, line = [], ""
    for word in name.split():
        longer = f"{line} {word}" if line else word
        if _fits(longer, size):
            line = longer
            continue
        if line:
            wrapped.append(line)
        while not _fits(word, size):
            cut = next((cut for cut in range(len(word) - 1, 1, -1) if _fits(word[:cut], size)), 1)
            wrapped.append(word[:cut])
            word = word[cut:]
        line = word
    wrapped.append(line)
    if len(wrapped) > lines:
        last = " ".join(wrapped[lines - 1:])
        while len(last) > 1 and not _fits(last + ELLIPSIS, size):
            last = last[:-1]
        wrapped[lines - 1:] = [last.rstrip() + ELLIPSIS]
    return "\n".join(wrapped)


def _bar_width(num_classes):
    """Gaps between bars where classes are named; past that, bars ~2 pixels wide would alias
    into stripes, so they touch."""
    return 0.8 if _named(num_classes) else 1.0


def _line_width(num_classes):
    """Per-class values joined by a line where classes are named; past that, dots: a line
    through 1,000 unordered values is a zigzag band."""
    return 1 if _named(num_classes) else 0


def _marker_size(num_classes):
    return max(1.5, 4 - num_classes / 100)


def _balanced_line(ax, balanced_count, label="balanced: N/K"):
    ax.axhline(balanced_count, color=BALANCED_COLOR, linestyle="--", linewidth=1,
               label=f"{label} = {balanced_count:.3g}")


def _figure_and_axes(ax, size):
    if ax is not None:
        return ax.figure, ax
    figure = Figure(figsize=size, layout="constrained")
    return figure, figure.add_subplot()


def prediction_histogram(predicted_counts, overlay, names, overlay_label, balanced_count,
                         title="", ax=None, end_roles=("most predicted", "least predicted"),
                         marked=None, true_counts=None):
    """Bars: predictions per class, in the given order; line: `overlay` (precision or recall).

    predicted_counts, overlay and names are already in display order (Figure 2 of the homework:
    most to least predicted under the reference model). NaN overlay values (undefined precision
    or recall) leave gaps. balanced_count is N/K, the count every class would get if balanced.
    marked is an optional pair (label, [positions]): classes whose bars are coloured and marked
    under the axis (a bar of 0 predictions shows only its mark), under `label` in the legend.
    true_counts, for a dataset whose classes hold different numbers of images: each class's
    count of images, marked on its bar in place of the balanced line.
    Past MAX_TICK_LABELS classes (and without `ax`), two panels below show the END_CLASSES at
    each end of the order by name, under `end_roles`.
    """
    num_classes = len(predicted_counts)
    predicted_counts, overlay = np.asarray(predicted_counts), np.asarray(overlay, dtype=np.float64)
    label, positions = marked if marked is not None else ("", [])
    is_marked = np.isin(np.arange(num_classes), positions)
    if ax is not None or _named(num_classes):
        figure, ax = _figure_and_axes(ax, (LANDSCAPE_WIDTH, HISTOGRAM_HEIGHT))
        ends = ()
    else:
        figure = Figure(figsize=(LANDSCAPE_WIDTH, RANKED_HISTOGRAM_HEIGHT), layout="constrained")
        axes = figure.subplot_mosaic([["all", "all"], ["first", "last"]], height_ratios=[1, 1.15])
        ax = axes["all"]
        first, last = np.arange(min(END_CLASSES, num_classes)), np.arange(num_classes)[-END_CLASSES:]
        ends = ((axes["first"], first, end_roles[0]), (axes["last"], last, end_roles[1]))
    # Two y axes, each with its label, take ~1.2 inches of the width.
    true_counts = None if true_counts is None else np.asarray(true_counts)
    overlay_ax = _histogram_axes(ax, predicted_counts, overlay, names, overlay_label,
                                 balanced_count, figure.get_figwidth() - 1.2, is_marked, label,
                                 true_counts)
    for end_ax, classes, role in ends:
        _histogram_axes(end_ax, predicted_counts[classes], overlay[classes],
                        [names[i] for i in classes], overlay_label, balanced_count,
                        figure.get_figwidth() / 2 - 1.2, is_marked[classes], label,
                        None if true_counts is None else true_counts[classes])
        end_ax.set_title(f"the {len(classes)} {role} (ranks {classes[0] + 1}-{classes[-1] + 1})",
                         loc="left", fontsize="medium")
    handles, labels = ax.get_legend_handles_labels()
    overlay_handles, overlay_labels = overlay_ax.get_legend_handles_labels()
    _legend_under_title(figure, ax, handles + overlay_handles, labels + overlay_labels, title)
    return figure


def _legend_under_title(figure, ax, handles, labels, title, **legend_options):
    """The legend in rows just above the axes, the title above it at the top left of the figure.
    Inside the axes, the legend would hide the tallest bars or points; as the axes' title (a
    fixed distance above the axes), the title would run into the legend's second row, which the
    figure's title never does: constrained layout puts it above everything."""
    ax.legend(handles, labels, loc="lower right", bbox_to_anchor=(1.0, 1.0), ncols=3,
              frameon=False, **legend_options)
    figure.suptitle(title, x=0.01, ha="left")


def _histogram_axes(ax, predicted_counts, overlay, names, overlay_label, balanced_count,
                    axis_inches, is_marked, marked_label, true_counts=None):
    """Bars of predicted counts (the `is_marked` ones coloured and marked under the axis), the
    balanced line or each class's true count, and the overlay on a twin axis; returns the twin
    axis."""
    num_classes = len(predicted_counts)
    positions = np.arange(num_classes)
    ax.bar(positions, predicted_counts, width=_bar_width(num_classes),
           color=np.where(is_marked, MARKED_COLOR, BAR_COLOR), label="predictions")
    if is_marked.any():
        ax.plot(positions[is_marked], np.zeros(is_marked.sum()), transform=ax.get_xaxis_transform(),
                linestyle="none", marker="^", markersize=7, color=MARKED_COLOR, clip_on=False,
                label=marked_label)
    if true_counts is None:
        _balanced_line(ax, balanced_count)
    else:
        ax.plot(positions, true_counts, linestyle="none", marker="_", color=BALANCED_COLOR,
                markersize=max(4.0, 2 * _marker_size(num_classes)), markeredgewidth=1.5,
                label="images of the class")
    ax.set_xlim(-0.6, num_classes - 0.4)
    ax.set_ylabel("number of predictions")
    _set_class_ticks(ax.xaxis, names, rotation=90, axis_inches=axis_inches)
    overlay_ax = ax.twinx()
    overlay_ax.plot(positions, overlay, color=OVERLAY_COLOR, marker="o",
                    markersize=_marker_size(num_classes), linewidth=_line_width(num_classes),
                    label=overlay_label)
    overlay_ax.set_ylim(0, 1.02)
    overlay_ax.set_ylabel(overlay_label)
    return overlay_ax


def _tick_font_size(axis_inches, num_classes):
    """The font of class names along an axis: as large as their spacing allows, within 3.5-9 pt."""
    return float(np.clip(0.92 * axis_inches * 72 / max(num_classes, 1), 3.5, 9))


def _matrix_side(names, box_inches):
    """The side in inches of a square matrix that a square box leaves beside the class names
    and an axis title, whose font in turn follows the side (two rounds settle it)."""
    side = box_inches - CLASS_LABEL_MARGIN
    for _ in range(2):
        size, labels = _class_labels(names, side)
        longest = max(_printed_points(line, size) for label in labels for line in label.split("\n"))
        side = box_inches - longest / 72 - AXIS_TITLE_INCHES
    return side


def confusion_matrix_figure(confusion, names, title="", ax=None, size=None):
    """Confusion counts, rows = true class, columns = predicted class, both in display order.

    A logarithmic colour scale keeps single off-diagonal confusions visible next to a diagonal
    of hundreds; empty cells are white. size: (width, height) in inches of a box on a page to
    fill (report.pdf's, under its own caption): the colour bar then stands beside the matrix
    instead of below it, so that the square matrix, and with it the class names, is as large as
    the box allows.
    """
    width = PORTRAIT_WIDTH if _named(len(names)) else RANKED_CONFUSION_WIDTH
    # Square cells; below the matrix its class names, then the colour bar (or beside it, in a
    # box no higher than the square needs).
    figure, ax = _figure_and_axes(ax, (width, width + 0.9) if size is None
                                  else (size[0], min(size[1], size[0] - COLORBAR_BESIDE)))
    counts = np.ma.masked_equal(np.asarray(confusion), 0)
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="white")
    norm = LogNorm(vmin=1, vmax=max(int(np.max(confusion)), 2))
    # Colour the K x K cells once: imshow of counts would normalise and colour every output
    # pixel (millions at 200 dpi), on each of savefig's two draws.
    ax.imshow(cmap(norm(counts), bytes=True), interpolation="nearest", aspect="equal")
    if size is None:
        # Under the matrix, not beside it: the page's width is what limits the matrix.
        # pad: a horizontal colour bar's default (0.15 of the axes' height) leaves an inch blank.
        figure.colorbar(ScalarMappable(norm, cmap), ax=ax, location="bottom", shrink=0.5, aspect=40,
                        pad=0.01, label="images (log scale)")
        side = figure.get_figwidth() - CLASS_LABEL_MARGIN
    else:
        figure.colorbar(ScalarMappable(norm, cmap), ax=ax, location="right", shrink=0.5, aspect=30,
                        pad=0.01, label="images (log scale)")
        side = _matrix_side(names, min(size[0] - COLORBAR_BESIDE, size[1]))
    _set_class_ticks(ax.xaxis, names, rotation=90, axis_inches=side, label="predicted class")
    _set_class_ticks(ax.yaxis, names, rotation=0, axis_inches=side, label="true class")
    ax.set_title(title)
    return figure


def lambda_sweep_figure(strengths, accuracy, balanced_accuracy, chosen_strength, title="", ax=None):
    """Accuracy and balanced accuracy of logit-adjusted logits against the adjustment strength λ.

    strengths, accuracy and balanced_accuracy are parallel arrays, already computed; the chosen
    λ is marked by a vertical line. On a class-balanced set (ImageNet100 val) the two curves
    coincide, so balanced accuracy is drawn dashed over accuracy to stay visible.
    """
    figure, ax = _figure_and_axes(ax, (6.5, 3.6))
    ax.plot(strengths, accuracy, color=BAR_COLOR, marker="o", markersize=3, label="accuracy")
    ax.plot(strengths, balanced_accuracy, color=OVERLAY_COLOR, marker="s", markersize=3,
            linestyle="--", label="balanced accuracy")
    ax.axvline(chosen_strength, color=BALANCED_COLOR, linestyle=":", linewidth=1.5,
               label=f"chosen λ = {chosen_strength:g}")
    ax.set_xlabel("adjustment strength λ  (logits − λ·log p̂)")
    ax.set_ylabel("fraction correct")
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    ax.set_title(title)
    return figure


def pseudo_label_figure(thresholds, kept_share, kept_accuracy, ks, selected_share,
                        selected_accuracy, kept_counts, kept_correct, names, marked_threshold,
                        title="", axes=None):
    """Top left: share of images kept and accuracy of the kept pseudo-labels against the
    confidence threshold τ; top right: the same for class-balanced top-k selection against k;
    bottom: images kept per class at `marked_threshold` (and how many of them are correct).

    Every array is already computed; kept_counts, kept_correct and names are in display order.
    NaN accuracies (nothing selected) leave gaps. axes is an optional triple (threshold axes,
    top-k axes, per-class axes).
    """
    num_classes = len(names)
    if axes is None:
        figure = Figure(figsize=(LANDSCAPE_WIDTH, PSEUDO_LABEL_HEIGHT), layout="constrained")
        axes = figure.subplot_mosaic([["threshold", "top_k"], ["classes", "classes"]],
                                     height_ratios=[1, 1.3])
        axes = axes["threshold"], axes["top_k"], axes["classes"]
    threshold_ax, top_k_ax, class_ax = axes
    threshold_ax.axvline(marked_threshold, color=BALANCED_COLOR, linestyle=":", linewidth=1.5,
                         label=f"τ = {marked_threshold:g}")
    # Legends where the curves are not: kept share falls with τ, selected share rises with k.
    for ax, x, share, accuracy, share_label, legend_place in (
            (threshold_ax, thresholds, kept_share, kept_accuracy, "share of images kept", "lower left"),
            (top_k_ax, ks, selected_share, selected_accuracy, "share of images selected", "center left")):
        ax.plot(x, share, color=BAR_COLOR, marker="o", markersize=3, label=share_label)
        ax.plot(x, accuracy, color=OVERLAY_COLOR, marker="s", markersize=3,
                label="accuracy of those pseudo-labels")
        ax.set_ylim(0, 1.02)
        ax.set_ylabel("fraction")
        ax.grid(alpha=0.3)
        ax.legend(loc=legend_place)
    threshold_ax.set_xlabel("confidence threshold τ (keep images with top probability ≥ τ)")
    threshold_ax.set_title(title, loc="left")
    top_k_ax.set_xscale("log", base=2)
    top_k_ax.set_xticks(ks, [str(k) for k in ks])
    top_k_ax.set_xlabel("k (the k most confident images predicted as each class)")
    positions = np.arange(num_classes)
    class_ax.bar(positions, kept_counts, width=_bar_width(num_classes), color=BAR_COLOR, alpha=0.45,
                 label="kept")
    class_ax.bar(positions, kept_correct, width=_bar_width(num_classes), color=BAR_COLOR,
                 label="kept and correct")
    _balanced_line(class_ax, np.sum(kept_counts) / max(num_classes, 1), label="balanced: kept/K")
    class_ax.set_xlim(-0.6, num_classes - 0.4)
    class_ax.set_ylim(0, 1.05 * max(np.max(kept_counts, initial=0), 1))
    if not np.any(kept_counts):
        class_ax.text(0.5, 0.5, f"no image reaches τ = {marked_threshold:g}",
                      transform=class_ax.transAxes, ha="center", va="center")
    class_ax.set_ylabel(f"images kept at τ = {marked_threshold:g}")
    class_ax.legend(loc="upper right")
    _set_class_ticks(class_ax.xaxis, names, rotation=90,
                     axis_inches=class_ax.figure.get_figwidth() - 1.2)
    return threshold_ax.figure


def comparison_figure(names, predicted_counts, recall_changes, balanced_count, reference,
                      confused=None, title="", axes=None):
    """Top: predictions per class of every run; bottom: each run's recall minus `reference`'s.

    names, and every array in the dicts predicted_counts ({run: counts}) and recall_changes
    ({run: recall - reference recall}, runs other than the reference), are in the reference
    run's order (most to least predicted by it). NaN recall changes (recall undefined) leave
    gaps. confused is an optional pair (label, [(true position, predicted position)]): cells of
    the reference's confusions whose classes are marked, the predicted class (taking images)
    at the top edge, the true class (losing them) at the bottom edge. axes is an optional pair
    (counts axes, recall-change axes).
    """
    num_classes = len(names)
    if axes is None:
        figure = Figure(figsize=(LANDSCAPE_WIDTH, COMPARISON_HEIGHT), layout="constrained")
        axes = figure.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    count_ax, change_ax = axes
    figure = count_ax.figure
    positions = np.arange(num_classes)
    # One colour per run, the same in both axes.
    colors = {run: matplotlib.colormaps["tab10"](index) for index, run in enumerate(predicted_counts)}
    for run, counts in predicted_counts.items():
        count_ax.plot(positions, counts, color=colors[run], marker="o",
                      markersize=_marker_size(num_classes), linewidth=_line_width(num_classes),
                      label=run)
    _balanced_line(count_ax, balanced_count)
    if confused is not None:
        label, cells = confused
        edge = count_ax.get_xaxis_transform()  # x in data, y in axes fraction
        for side, (y, marker, color, role) in enumerate(((0.0, "^", LOSER_COLOR, "true class"),
                                                         (1.0, "v", TAKER_COLOR, "predicted class"))):
            marked = sorted({cell[side] for cell in cells})
            count_ax.plot(marked, np.full(len(marked), y), transform=edge, linestyle="none",
                          marker=marker, markersize=6, color=color, clip_on=False,
                          label=f"{role} of {label}")
    count_ax.set_ylabel("number of predictions")
    count_ax.set_xlim(-0.6, num_classes - 0.4)
    _legend_under_title(figure, count_ax, *count_ax.get_legend_handles_labels(), title,
                        fontsize="small")
    width = 0.8 / max(len(recall_changes), 1)
    for index, (run, change) in enumerate(recall_changes.items()):
        offset = (index - (len(recall_changes) - 1) / 2) * width
        change_ax.bar(positions + offset, change, width=width, color=colors[run],
                      label=f"{run} − {reference}")
    change_ax.axhline(0, color="black", linewidth=0.8)
    change_ax.set_ylabel(f"recall − recall of {reference}")
    if recall_changes:
        # Debiasing raises the recall of the tail (right), seldom of the head (left).
        change_ax.legend(loc="upper left", fontsize="small")
    else:
        change_ax.text(0.5, 0.5, f"only {reference} has run: no recall change to show",
                       transform=change_ax.transAxes, ha="center", va="center")
    _set_class_ticks(change_ax.xaxis, names, rotation=90, axis_inches=figure.get_figwidth() - 0.8,
                     label=f"class, most to least predicted by {reference}")
    return figure
