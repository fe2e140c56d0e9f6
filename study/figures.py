"""The study's figures: accuracy against imbalance, one point per run, grouped by dataset; and how
alike the runs on one dataset predict, class by class. As in plotting.py: data in, a matplotlib
Figure out (the caller saves it), drawn at the size the study's PDF prints it."""
import numpy as np
from matplotlib.lines import Line2D
from matplotlib.figure import Figure

import plotting

IMBALANCE_HEIGHT = 4.6  # inches: with its heading, caption and legend, half a landscape page
MARKERS = "osD^vP*Xph<>"  # one per dataset, with its colour
LABEL_MARGIN = 2.2  # inches of a heat map's side taken by the runs' names
COLORBAR_MARGIN = 1.0
HEAT_MAP_CELL = 0.6  # inches, at most; fewer where many runs share the page's width


def coinciding(x, y, shown, decimals=4):
    """{(x, y): [indices]} of the shown points, those that coincide to `decimals` together, so
    that their labels are written once, side by side, not over each other."""
    points = {}
    for index in np.flatnonzero(shown):
        points.setdefault((round(x[index], decimals), round(y[index], decimals)), []).append(index)
    return points


def imbalance_figure(labels, groups, accuracy, balanced_accuracy, kl, gini, sources, title=""):
    """Two panels, one point per run, its marker and colour its group's (dataset): the KL of
    its predicted counts against its accuracy, their Gini against its balanced accuracy.
    labels: the text beside each point (its number in the study); sources: per run, the index
    of the run it was made from (an arrow from that one to it), or None. A run whose values on a
    panel are not finite (KL is infinite when a class with no images is predicted) is named under
    that panel instead."""
    groups = np.asarray(groups)
    figure = Figure(figsize=(plotting.LANDSCAPE_WIDTH, IMBALANCE_HEIGHT), layout="constrained")
    group_names = list(dict.fromkeys(groups))
    style = {name: (MARKERS[index % len(MARKERS)], f"C{index % 10}")
             for index, name in enumerate(group_names)}
    for ax, x, y, x_label, y_label in zip(
            figure.subplots(1, 2), (accuracy, balanced_accuracy), (kl, gini),
            ("accuracy", "balanced accuracy"),
            ("KL of the predicted counts (nats)", "Gini of the predicted counts")):
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        shown = np.isfinite(x) & np.isfinite(y)
        for name, (marker, color) in style.items():
            members = shown & (groups == name)
            ax.scatter(x[members], y[members], marker=marker, color=color, s=36, zorder=3)
        for (x_value, y_value), together in coinciding(x, y, shown).items():
            ax.annotate(", ".join(labels[index] for index in together), (x_value, y_value),
                        xytext=(4, 3), textcoords="offset points", fontsize=7)
        for index, source in enumerate(sources):
            if source is not None and shown[index] and shown[source]:
                ax.annotate("", xy=(x[index], y[index]), xytext=(x[source], y[source]),
                            arrowprops={"arrowstyle": "->", "color": "0.45", "lw": 0.8,
                                        "shrinkA": 5, "shrinkB": 5})
        hidden = [labels[index] for index in np.flatnonzero(~shown)]
        ax.set_xlabel(x_label + (f"\nnot shown (undefined or infinite): {', '.join(hidden)}"
                                 if hidden else ""))
        ax.set_ylabel(y_label)
        ax.set_ylim(0, 1.12 * max(y[shown], default=0) or 1)  # room for the labels above
        ax.margins(x=0.15)  # ... and on the right
        ax.grid(alpha=0.3)
    handles = [Line2D([], [], linestyle="", marker=marker, color=color, label=name)
               for name, (marker, color) in style.items()]
    if any(source is not None for source in sources):
        handles.append(Line2D([], [], color="0.45", lw=0.8, marker=">", markevery=[1],
                              label="from a run to its training-free run"))
    figure.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 4),
                  fontsize=8, frameon=False)
    figure.suptitle(title, fontsize=10)
    return figure


def agreement_figure(rho, labels, short_labels, title=""):
    """The runs' pairwise correlations `rho` [R, R] as a lower-triangular heat map (−1 to 1),
    each cell's value written in it, n/a where undefined; `labels` name the rows, `short_labels`
    (their numbers, say) the columns."""
    count = len(rho)
    cell = min(HEAT_MAP_CELL, (plotting.PORTRAIT_WIDTH - LABEL_MARGIN - COLORBAR_MARGIN) / count)
    figure = Figure(figsize=(LABEL_MARGIN + COLORBAR_MARGIN + cell * count, 1.4 + cell * count),
                    layout="constrained")
    ax = figure.add_subplot()
    lower = np.tril(np.ones((count, count), dtype=bool))
    image = ax.imshow(np.where(lower, rho, np.nan), cmap="RdBu_r", vmin=-1, vmax=1)
    fontsize = float(np.clip(cell * 72 / 3, 4, 9))
    for row, column in zip(*np.nonzero(lower)):
        value = rho[row, column]
        text = "n/a" if np.isnan(value) else f"{value:.2f}".replace("-0.00", "0.00")
        ax.text(column, row, text, ha="center",
                va="center", fontsize=fontsize, color="white" if abs(value) > 0.6 else "black")
    ax.set_xticks(np.arange(count), short_labels, fontsize=7)
    ax.set_yticks(np.arange(count), labels, fontsize=7)
    ax.spines[:].set_visible(False)
    colorbar = figure.colorbar(image, ax=ax, shrink=0.8)
    colorbar.set_label("Spearman ρ", fontsize=8)
    colorbar.ax.tick_params(labelsize=7)
    ax.set_title(title, fontsize=9)
    return figure
