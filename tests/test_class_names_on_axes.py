"""Long class names on a figure's class axes (GTSRB's in CLIP_benchmark run to 50 characters)
wrap, shrink or end in "…" within plotting.NAME_INCHES, measured on the drawn figure, instead of
squeezing the plot to nothing; names that fit are left as they are, and every name is drawn as
typed, never as mathtext."""
import warnings

import numpy as np
import pytest
from matplotlib import cbook

import plotting
from sources import classes

SIGNS = ["red and white circle 20 kph speed limit", "red and white triangle with exclamation mark warning",
         "blue circle with white forward and left arrow mandatory", "empty red and white circle",
         "white circle with gray strike bar no speed limit", "stop"]


def figures(names):
    """Every figure with a class axis, drawn for `names` (display order)."""
    count = len(names)
    predicted = np.arange(count, 0, -1) * 5
    recall = np.linspace(1, 0, count)
    confusion = np.eye(count, dtype=int) * 40 + 1
    return {
        "histogram": plotting.prediction_histogram(predicted, recall, names, "recall", predicted.mean()),
        "confusion matrix": plotting.confusion_matrix_figure(confusion, names),
        "confusion matrix in a box": plotting.confusion_matrix_figure(confusion, names, size=(7.6, 9.0)),
        "pseudo-labels": plotting.pseudo_label_figure([0.1, 0.5], [1, 0.5], [0.5, 0.8], [1, 2], [0.1, 0.2],
                                                      [0.5, 0.6], predicted, predicted // 2, names, 0.5),
        "comparison": plotting.comparison_figure(names, {"clip": predicted, "other": predicted[::-1]},
                                                 {"other": recall - 0.5}, predicted.mean(), "clip"),
    }


def drawn_class_labels(figure):
    """Lay out and draw the figure, failing on any warning (constrained layout giving up);
    return (tick label text, its extent across its axis in inches) of every named class tick."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        figure.draw_without_rendering()
    renderer = figure._get_renderer()
    labels = []
    for ax in figure.axes:
        for axis, across in ((ax.xaxis, "height"), (ax.yaxis, "width")):
            for text in axis.get_ticklabels() if axis.get_visible() else ():
                if text.get_visible() and not is_number(text.get_text()):
                    extent = text.get_window_extent(renderer)
                    labels.append((text.get_text(), getattr(extent, across) / figure.dpi))
    return labels


def is_number(text):
    """Whether a tick label is a value (counts, fractions, a log colour bar's $10^{0}$)."""
    return text.startswith("$") or text.replace("−", "").replace(".", "").isdigit()


def characters(text):
    return "".join(text.split())


def assert_whole_or_cut(labels, names, figure_name):
    """Every label within NAME_INCHES (a few percent over: the budget leaves kerning out,
    plotting._printed_points), and either a whole name, wrapped, or a name's start ending in "…"."""
    assert labels, figure_name
    assert max(inches for _, inches in labels) <= plotting.NAME_INCHES * 1.05, figure_name
    whole = {characters(name) for name in names}
    for text, _ in labels:
        shown = characters(text)
        assert shown in whole or (shown.endswith("…") and any(
            name.startswith(shown[:-1]) and len(shown) > 10 for name in whole)), (figure_name, text)


@pytest.mark.parametrize("count", [6, 43])
def test_long_names_wrap_whole_where_their_room_holds_them(count):
    names = [SIGNS[index % len(SIGNS)] + ("" if index < len(SIGNS) else f" {index}") for index in range(count)]
    for name, figure in figures(names).items():
        labels = drawn_class_labels(figure)
        assert_whole_or_cut(labels, names, name)
        axes_inches = figure.axes[0].get_position().height * figure.get_figheight()
        assert axes_inches > 1.0, f"{name}: its plot squeezed to {axes_inches:.2f} inches"
        # A matrix's 43 rows leave one line of 6 points to a name: GTSRB's are cut there.
        if count == 6 or "confusion" not in name:
            assert {characters(text) for text, _ in labels} == {characters(name) for name in names}, name
            assert any("\n" in text for text, _ in labels), name


def test_names_too_long_for_their_room_end_in_an_ellipsis():
    names = [f"{'x' * 120} {index}" for index in range(5)] + [" ".join(SIGNS)]
    for name, figure in figures(names).items():
        labels = drawn_class_labels(figure)
        assert_whole_or_cut(labels, names, name)
        assert all(text.endswith("…") for text, _ in labels), name


def test_imagenet_names_are_left_whole_on_one_line_at_100_classes():
    # CLIP's ImageNet-1k names, as shipped (test_classes checks them against open_clip's).
    longest = sorted((row["clip_name"] for row in classes.imagenet1k_table().values()), key=len)[-100:]
    for name, figure in figures(longest).items():
        assert sorted(text for text, _ in drawn_class_labels(figure)) == sorted(
            longest * (2 if "confusion" in name else 1)), name


def test_names_are_drawn_as_typed_never_as_mathtext():
    names = [r"$\frac$ of a class", "$x^2$ squared", "costs $5 or $6", "a plain class"]
    for name, figure in figures(names).items():
        labels = [text for text, _ in drawn_class_labels(figure)]  # "$\frac$" would raise here
        assert labels and not any(cbook.is_math_text(text) for text in labels), name
        assert {text.replace("\\$", "$") for text in labels} == set(names), name
