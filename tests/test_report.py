"""`starter.py --report`: report.pdf / report.md / comparison.png, and the comparison metrics.

Runs on the `synthetic_runs` fixture (clip and debiaspl analysed from synthetic logits, no torch).
"""
import json
import math
import re
import shutil
import subprocess
import sys
from collections import Counter
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pypdf
import pytest
from reportlab.pdfbase import pdfmetrics
from matplotlib.figure import Figure
from sklearn.metrics import f1_score

from analysis import run_analysis, terminal_text
from runs import cache
import metrics
from runs import outputs
import plotting
import report
from runs import descriptors
from runs.kinds import run_kind
import starter
from cli.commands import for_out
from conftest import synthetic_predictions
from report.hand_in import NOTES_HEADING
from oracles import pseudo_label_tables

SECTION_TITLES = ["Q1(a)", "Q1(b)", "Q1(c)", "Q2(a)", "Q2(b)", "Q2(c)", "Additional explanations"]
# comparison, who steals from whom, per class, by true label, pseudo-labels, why, provenance
APPENDIX_TITLES = [f"Appendix {letter}" for letter in "ABCDEFG"]
NAME, STUDENT_ID = "Grace Hopper", "31415926"


def make_report(out, **details):
    """(report.pdf, report.md's text) written alone, as --report writes them; the study and the
    explorer that the command adds are other tests' (built_report runs the command)."""
    assert report.write_report(out, for_out(out), **details)
    return out / "report.pdf", markdown_text(out)


def markdown_text(out):
    """report.md, no-break spaces (page 1's details hold theirs together) as spaces."""
    return (out / "report.md").read_text().replace("\u00a0", " ")


@pytest.fixture(scope="module")
def built_report(tmp_path_factory, analysed_synthetic_runs):
    """(OUT, report.pdf, report.md) built once for the tests that only read them."""
    out = tmp_path_factory.mktemp("report")
    shutil.copytree(analysed_synthetic_runs, out, dirs_exist_ok=True)
    assert starter.main(["--report", "--out", str(out), "--name", NAME, "--student-id", STUDENT_ID,
                         "--appendix"]) == 0
    return out, out / "report.pdf", markdown_text(out)


def pdf_page_texts(path):
    """Each page's text, no-break spaces (page 1's details hold theirs together) as spaces."""
    return [(page.extract_text() or "").replace("\u00a0", " ") for page in pypdf.PdfReader(path).pages]


def pdf_text(path):
    """The whole PDF's text with line breaks as spaces (table cells wrap within lines)."""
    return " ".join(" ".join(pdf_page_texts(path)).split())


def markdown_sections(text):
    """{title: body} of report.md's `## title: subtitle` sections."""
    parts = re.split(r"^## ", text, flags=re.MULTILINE)[1:]
    return {part.split(":", 1)[0].split("\n", 1)[0].strip(): part for part in parts}


def markdown_tables(text):
    """[(caption, columns, rows)] of the Markdown tables in `text`, each under a **caption**."""
    tables = []
    lines = text.split("\n")
    for index, line in enumerate(lines):
        if line.startswith("| ") and (index == 0 or not lines[index - 1].startswith("|")):
            caption = lines[index - 2].strip("*") if index >= 2 else ""
            block = []
            for row in lines[index:]:
                if not row.startswith("|"):
                    break
                block.append(row)
            split = [[cell.strip() for cell in re.split(r"(?<!\\)\|", row)[1:-1]] for row in block]
            tables.append((caption, split[0], split[2:]))
    return tables


def table_with_caption(text, caption_start):
    matches = [table for table in markdown_tables(text) if table[0].startswith(caption_start)]
    assert len(matches) == 1, f"{caption_start!r}: {len(matches)} tables"
    return matches[0]


def read_json(path):
    return json.loads(Path(path).read_text())


# ---------------------------------------------------------------------------------------------
# metrics.py: comparison numbers against hand-computed values and sklearn

@pytest.mark.parametrize("labels, predicted, num_classes", [
    ([0, 0, 1, 1, 2, 2], [0, 1, 1, 1, 0, 2], 3),
    ([0, 0, 1, 1, 2, 2], [0, 0, 0, 0, 0, 3], 4),  # class 3 has no images but a prediction
    ([0, 1, 2, 2, 2, 2], [1, 1, 1, 1, 1, 1], 3),  # classes 0 and 2 never predicted
])
def test_macro_f1_matches_sklearn(labels, predicted, num_classes):
    confusion = metrics.confusion_matrix(labels, predicted, num_classes)
    ours = metrics.macro_f1(np.diag(confusion), confusion.sum(axis=1), confusion.sum(axis=0))
    expected = f1_score(labels, predicted, average="macro", labels=sorted(set(labels)),
                        zero_division=0)
    assert ours == pytest.approx(expected)


def test_macro_f1_by_hand_and_undefined():
    # F1 = 2TP / (images + predictions): class 0: 2·1/(2+1); class 1: 2·2/(2+3); class 2: 0.
    assert metrics.macro_f1([1, 2, 0], [2, 2, 2], [1, 3, 2]) == pytest.approx((2 / 3 + 4 / 5 + 0) / 3)
    assert math.isnan(metrics.macro_f1([0, 0], [0, 0], [1, 1]))  # no class has images


def test_max_min_ratio_is_inf_or_nan_instead_of_dividing_by_zero():
    assert metrics.max_min_count_ratio([6, 3, 2]) == 3.0
    assert metrics.max_min_count_ratio([6, 0, 2]) == math.inf
    assert math.isnan(metrics.max_min_count_ratio([0, 0, 0]))


def test_kl_from_uniform_by_hand():
    assert metrics.kl_from_uniform([5, 5, 5, 5]) == pytest.approx(0.0)
    assert metrics.kl_from_uniform([8, 0, 0, 0]) == pytest.approx(math.log(4))  # 0 log 0 = 0
    assert metrics.kl_from_uniform([3, 1]) == pytest.approx(0.75 * math.log(1.5) + 0.25 * math.log(0.5))
    assert math.isnan(metrics.kl_from_uniform([0, 0]))


def test_classes_below_half_balanced_and_std_by_hand():
    # N = 20, K = 4: balanced count 5, half of it 2.5; only the class with 1 is below.
    assert metrics.classes_below_balanced([10, 4, 5, 1]) == 1
    assert metrics.classes_below_balanced([3, 2, 3, 2], fraction=1.0) == 2  # strictly fewer
    imbalance = metrics.prediction_imbalance([2, 0, 0, 0])
    assert imbalance["count_std"] == pytest.approx(math.sqrt(0.75))  # population std (ddof=0)
    assert imbalance["classes_without_predictions"] == 3
    assert imbalance["max_min_ratio"] == math.inf
    assert imbalance["classes_below_half_balanced"] == 3


def test_run_measures_recover_macro_f1_from_metrics_json(synthetic_runs):
    """The report computes macro-F1 from metrics.json alone; it must equal sklearn's on the cache."""
    for model in ("clip", "debiaspl"):
        predictions = cache.load_predictions(synthetic_runs / model / "predictions.npz")
        measures = report.run_measures(read_json(synthetic_runs / model / "metrics.json"))
        expected = f1_score(predictions.labels, predictions.logits.argmax(axis=1), average="macro",
                            labels=np.unique(predictions.labels), zero_division=0)
        assert measures["macro_f1"] == pytest.approx(expected)


# ---------------------------------------------------------------------------------------------
# plotting.comparison_figure and the comparison data

def direct_top_confusions(predictions, count=20):
    """(true, predicted) class indices of the `count` largest off-diagonal cells, counted here."""
    pairs = Counter(zip(predictions.labels.tolist(), predictions.logits.argmax(axis=1).tolist()))
    return [(true, predicted) for _, true, predicted in
            sorted((-n, t, p) for (t, p), n in pairs.items() if t != p)[:count]]


def test_comparison_data_and_figure(synthetic_runs):
    runs = report.load_runs(synthetic_runs, for_out(synthetic_runs))
    comparison, = report.comparison_groups(runs)
    clip_metrics = read_json(synthetic_runs / "clip" / "metrics.json")
    assert comparison.wnids == clip_metrics["own_order"]
    by_wnid = {entry["wnid"]: entry for entry in read_json(synthetic_runs / "debiaspl" / "metrics.json")["classes"]}
    clip_by_wnid = {entry["wnid"]: entry for entry in clip_metrics["classes"]}
    change = comparison.recall_changes["debiaspl"]
    for index, wnid in enumerate(comparison.wnids):
        assert comparison.predicted_counts["debiaspl"][index] == by_wnid[wnid]["predicted_count"]
        assert change[index] == pytest.approx(by_wnid[wnid]["recall"] - clip_by_wnid[wnid]["recall"])
    assert list(comparison.recall_changes) == ["debiaspl"]

    figure = report.draw_comparison(comparison)
    assert isinstance(figure, Figure)
    count_ax, change_ax = figure.axes
    assert len(count_ax.lines) == 2 + 1 + 2  # a line per run, the balanced count, two kinds of marks
    assert len(change_ax.patches) == len(comparison.wnids)  # debiaspl's bars
    # clip's largest confusions, counted from its cache: true classes ▲, predicted classes ▼.
    clip = cache.load_predictions(synthetic_runs / "clip" / "predictions.npz")
    position = {wnid: index for index, wnid in enumerate(comparison.wnids)}
    cells = [(position[clip.wnids[t]], position[clip.wnids[p]]) for t, p in direct_top_confusions(clip)]
    marks = {line.get_marker(): line.get_xdata().tolist() for line in count_ax.lines
             if line.get_linestyle() == "None"}
    assert marks == {"^": sorted({t for t, _ in cells}), "v": sorted({p for _, p in cells})}
    assert "SIMULATED" not in count_ax.get_title(loc="left")

    given = Figure().subplots(2, 1)
    assert plotting.comparison_figure(["a", "b"], {"clip": np.array([3, 1])}, {}, 2.0, "clip",
                                      axes=given) is given[0].figure


# ---------------------------------------------------------------------------------------------
# The report

def section_headings(sections_of):
    """The heading line of each SECTION_TITLES section of the synthetic runs' report."""
    subtitles = {f"Q{number}({letter})": f"{run_kind(model).title}: {topic}"
                 for number, model in ((1, "clip"), (2, "debiaspl"))
                 for letter, topic in report.SUBQUESTION_TOPICS.items()}
    return [f"{title}: {subtitles.get(title, 'all runs')}" for title in sections_of]


def assert_headings_in_order(pdf_path, titles):
    lines = [line.strip() for text in pdf_page_texts(pdf_path) for line in text.split("\n")]
    positions = [next(i for i, line in enumerate(lines) if line.startswith(title + ": "))
                 for title in titles]
    assert positions == sorted(positions)
    return lines


def test_report_has_every_section_in_order(built_report):
    out, pdf_path, markdown = built_report
    assert (out / "comparison.png").is_file()
    lines = assert_headings_in_order(pdf_path, SECTION_TITLES + APPENDIX_TITLES)
    for heading in section_headings(SECTION_TITLES[:6]):
        assert heading in lines
    first_page = pdf_page_texts(pdf_path)[0]
    assert first_page.strip().startswith(f"Name: {NAME}")  # the spec: at the top of page 1
    for expected in (f"Student ID: {STUDENT_ID}", f"Date of submission: {datetime.now():%Y-%m-%d}",
                     "Q1(a)"):
        assert expected in first_page
    assert "{" not in first_page  # no JSON dumps
    assert list(markdown_sections(markdown)) == SECTION_TITLES + APPENDIX_TITLES
    assert f"Name: {NAME}" in markdown and f"Student ID: {STUDENT_ID}" in markdown
    sections = markdown_sections(markdown)
    for title in ("Q1(c)", "Q2(c)"):  # the pseudo-label grouping (Figure 4's); by_true: appendix
        assert "by true label (" not in sections[title]  # the rule may name the view, not show it
    assert "by true label" in sections["Appendix D"]
    for expected in ("Summary", "macro-F1", "KL to uniform", "clip-synthetic"):
        assert expected in sections["Additional explanations"]
    for expected in ("What produced the results", "debiaspl-synthetic", "Generated"):
        assert expected in sections["Appendix G"]
    for page in pdf_page_texts(pdf_path)[1:]:  # the running header names the page's sections
        header = page.strip().split("\n")[-2]  # drawn last, before the footer
        assert ({part.removesuffix(" (continued)") for part in header.split(" · ")}
                <= set(SECTION_TITLES + APPENDIX_TITLES)), page
    assert "SIMULATED" not in pdf_text(pdf_path) + markdown  # only simulated runs say so


def assert_pages_have_ink(pdf_path, text_only=()):
    """Render every page (pdfium) and require ink between the running header and the footer,
    except on the pages numbered in `text_only` (a few lines, such as a missing run's)."""
    import pypdfium2
    document = pypdfium2.PdfDocument(pdf_path)
    assert len(document) == len(pypdf.PdfReader(pdf_path).pages)
    for number, page in enumerate(document, start=1):
        pixels = np.asarray(page.render(scale=30 / 72).to_pil().convert("L"), dtype=float)
        body = pixels[int(0.08 * len(pixels)): int(0.92 * len(pixels))]
        assert number in text_only or (body < 200).mean() > 0.002, f"page {number} is blank"


def test_pdf_pages_are_not_blank(built_report):
    _, pdf_path, _ = built_report
    figures = 0
    for number, page in enumerate(pypdf.PdfReader(pdf_path).pages, start=1):
        for image in page.images:
            pixels = np.asarray(image.image.convert("L"), dtype=float)
            assert pixels.std() > 1, f"page {number}: image {image.name} is uniform"
            figures += 1
    # Every figure is vector graphics (see below) but for the two images in each run's confusion
    # matrix: its cells and its colour bar.
    assert figures == 2 * 2
    assert_pages_have_ink(pdf_path)


def test_pseudo_label_table_against_the_logits(built_report):
    synthetic_runs, _, markdown = built_report
    _, columns, rows = table_with_caption(markdown, "Pseudo-labels a semi-supervised learner")
    assert [row[0] for row in rows] == ["clip", "debiaspl"]
    for row in rows:
        cells = dict(zip(columns, row))
        predictions = cache.load_predictions(synthetic_runs / row[0] / "predictions.npz")
        thresholds = sorted({*report.PSEUDO_LABEL_THRESHOLDS, 0.95})
        expected, _, _ = pseudo_label_tables(predictions.logits, predictions.labels,
                                             len(predictions.wnids), thresholds, [])
        at = {entry["threshold"]: entry for entry in expected}
        for threshold in report.PSEUDO_LABEL_THRESHOLDS:
            accuracy = "n/a" if at[threshold]["accuracy"] is None else f"{at[threshold]['accuracy']:.3f}"
            assert cells[f"τ = {threshold:g}: kept / acc."] == f"{at[threshold]['kept_share']:.3f} / {accuracy}"
        assert int(cells["classes none kept at 0.95"]) == at[0.95]["classes_without_kept"]


def cosine_list(cosines, digits):
    return "[" + ", ".join(f"{cosine:.{digits}f}" for cosine in cosines) + "]"


def test_markdown_and_pdf_tables_match_the_json(built_report):
    synthetic_runs, pdf_path, markdown = built_report
    sections = markdown_sections(markdown)
    text = pdf_text(pdf_path)
    for question, model in (("Q1", "clip"), ("Q2", "debiaspl")):
        centroids = read_json(synthetic_runs / model / "centroids.json")
        summary = read_json(synthetic_runs / model / "metrics.json")
        body = sections[f"{question}(c)"]
        literal, centered = (centroids["by_predicted"]["queries"],
                             centroids["centered"]["by_predicted"]["queries"])
        assert len(literal) == (2 if model == "clip" else 4)
        answered = [query for query in literal if query["neighbors"]]
        for query in literal:
            if not query["neighbors"]:
                assert f"{question}(c) {query['role']}: {query['name']}" in body and query["note"] in body
        # (c) leads with the answer: the literal cosines by predicted label, one column pair per class.
        caption, columns, rows = markdown_tables(body)[0]
        assert caption.startswith(f"{question}(c): the 10 nearest class centroids by cosine")
        assert columns == ["#", *(cell for query in answered for cell in (query["name"], "cosine"))]
        for index, query in enumerate(answered):
            assert [row[1 + 2 * index] for row in rows] == [n["name"] for n in query["neighbors"]]
            assert [float(row[2 + 2 * index]) for row in rows] == pytest.approx(
                [n["cosine"] for n in query["neighbors"]], abs=0.5e-6)  # 6 decimals
            vector = f"{query['role']}, {query['name']}: ["
            line = next(line for line in body.split("\n") if line.startswith("*" + vector))
            assert line.rstrip().endswith(cosine_list([n["cosine"] for n in query["neighbors"]], 6) + "*")
            assert cosine_list([n["cosine"] for n in query["neighbors"]], 6) in text
        assert "centered" not in body  # the secondary view is on page 5
        explanations = sections["Additional explanations"]
        for shifted in centered:
            if shifted["neighbors"]:
                listed = ", ".join(f"{n['name']} {n['cosine']:.4f}" for n in shifted["neighbors"])
                assert f"{question}(c) {shifted['role']}: {shifted['name']}, centered: {listed}" in explanations
        # (a): who feeds the most predicted classes, where the least predicted ones' images go.
        body = sections["Appendix B"]
        for entry in summary["class_confusions"]:
            _, columns, rows = table_with_caption(body, f"{question}(a) {entry['role']}: {entry['name']} (")
            other = "true" if entry["direction"] == "incoming" else "predicted"
            assert rows == ([[cell[other]["name"], str(cell["count"]), f"{cell['share_of_true']:.0%}"]
                             for cell in entry["confusions"]] or [["none", "", ""]])
        # (b): the largest confusions.
        _, columns, rows = table_with_caption(sections["Appendix B"], f"{question}(b) who steals")
        assert columns == ["#", "true class", "predicted as", "images", "of true class"]
        assert [row[1:4] for row in rows] == [[cell["true"]["name"], cell["predicted"]["name"],
                                               str(cell["count"])] for cell in summary["top_confusions"]]
        assert f"{question}(b) who steals from whom" in text

    _, columns, rows = table_with_caption(markdown, "Summary")
    assert columns == ["run", *report.SUMMARY_COLUMNS]
    for row in rows + table_with_caption(markdown, "Accuracy and prediction-count imbalance")[2]:
        values = dict(zip(table_with_caption(markdown, "Summary")[1] if row in rows else
                          table_with_caption(markdown, "Accuracy and")[1], row))
        saved = read_json(synthetic_runs / values["run"] / "metrics.json")
        counts = np.array([entry["predicted_count"] for entry in saved["classes"]])
        p = counts[counts > 0] / counts.sum()
        predictions = cache.load_predictions(synthetic_runs / values["run"] / "predictions.npz")
        (at_training,), _, _ = pseudo_label_tables(predictions.logits, predictions.labels,
                                                   len(predictions.wnids), [0.95], [])
        expected = {"images": lambda v: int(v) == saved["num_images"],
                    "accuracy": lambda v: float(v) == pytest.approx(saved["accuracy"], abs=0.5e-4),
                    "top-5": lambda v: float(v) == pytest.approx(saved["top5_accuracy"], abs=0.5e-4),
                    "balanced acc.": lambda v: float(v) == pytest.approx(saved["balanced_accuracy"], abs=0.5e-4),
                    "KL to uniform (nats)": lambda v: float(v) == pytest.approx(
                        np.sum(p * np.log(p * len(counts))), abs=0.5e-4),
                    "count std": lambda v: float(v) == pytest.approx(np.std(counts), abs=0.005),
                    "classes < N/(2K)": lambda v: int(v) == int(np.sum(counts < counts.sum() / len(counts) / 2)),
                    "kept at 0.95": lambda v: float(v) == pytest.approx(at_training["kept_share"], abs=0.5e-4),
                    "acc. of kept at 0.95": lambda v: (v == "n/a" if at_training["accuracy"] is None else
                                                       float(v) == pytest.approx(at_training["accuracy"], abs=0.5e-4)),
                    "max/min count": lambda v: (v.startswith(f"inf: {np.sum(counts == 0)} class")
                                                if counts.min() == 0 else
                                                float(v) == pytest.approx(counts.max() / counts.min(), abs=0.005))}
        for column, value in values.items():
            assert column == "run" or column == "macro-F1" or expected[column](value), (column, value)

    # Figures are linked relative to OUT, where report.md is.
    for path in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown):
        assert (synthetic_runs / path).is_file()


def test_only_clip_present_and_blank_lines_to_write_on(synthetic_runs):
    shutil.rmtree(synthetic_runs / "debiaspl")
    pdf_path, markdown = make_report(synthetic_runs)
    sections = markdown_sections(markdown)
    assert list(sections) == SECTION_TITLES
    command = f"python starter.py --model debiaspl --out {synthetic_runs}"
    for title in ("Q2(a)", "Q2(b)", "Q2(c)"):
        assert command in sections[title]
    text = "\n".join(pdf_page_texts(pdf_path))
    assert text.count("python starter.py --model debiaspl") >= 3
    _, _, rows = table_with_caption(markdown, "Summary")
    assert [row[0] for row in rows] == ["clip"]
    assert (synthetic_runs / "comparison.png").is_file()
    first_page = pdf_page_texts(pdf_path)[0]
    assert re.search(r"Name: _{10,}", first_page) and re.search(r"Student ID: _{10,}", first_page)


def test_unanalysed_run_and_missing_figure_name_the_command(synthetic_runs):
    (synthetic_runs / "debiaspl" / "metrics.json").unlink()  # cache still there: --from-cache
    (synthetic_runs / "clip" / "confusion_matrix.png").unlink()
    _, markdown = make_report(synthetic_runs)
    sections = markdown_sections(markdown)
    assert f"python starter.py --model debiaspl --from-cache --out {synthetic_runs}" in sections["Q2(a)"]
    assert "clip/confusion_matrix.png is missing" in sections["Q1(b)"]
    assert f"python starter.py --model clip --from-cache --out {synthetic_runs}" in sections["Q1(b)"]


def test_outputs_of_an_older_version_name_the_command(synthetic_runs):
    """metrics.json and centroids.json written before who-steals-from-whom and centering."""
    for name, keys in (("metrics.json", ("top_confusions", "class_confusions")), ("centroids.json", ("centered",))):
        saved = read_json(synthetic_runs / "clip" / name)
        outputs.write_json(synthetic_runs / "clip" / name, {k: v for k, v in saved.items() if k not in keys})
    _, markdown = make_report(synthetic_runs, appendix=True)
    sections = markdown_sections(markdown)
    command = f"python starter.py --model clip --from-cache --out {synthetic_runs}"
    for title in ("Appendix B", "Additional explanations"):  # who steals from whom; centered
        assert "predates this version" in sections[title] and command in sections[title]
    assert "most predicted, " in sections["Q1(c)"] and not re.search(r"Q1\(c\) [^\n]*, centered:", markdown)


def test_figures_in_an_outdated_clip_order_are_flagged(synthetic_runs):
    path = synthetic_runs / "debiaspl" / "metrics.json"
    saved = read_json(path)
    saved["order"] = saved["order"][::-1]  # as if clip had been rerun since
    outputs.write_json(path, saved)
    _, markdown = make_report(synthetic_runs)
    sections = markdown_sections(markdown)
    for title in ("Q2(a)", "Q2(b)"):
        assert "not in clip's current class order" in sections[title]
        assert "--model debiaspl --from-cache" in sections[title]
    assert "current class order" not in sections["Q1(a)"]


@pytest.mark.slow  # an analysis and one or two reports more: seconds
def test_clip_la_section_after_q2_and_its_appendix(synthetic_runs):
    la_dir = synthetic_runs / "clip-la"
    predictions = synthetic_predictions("clip-la", 2)
    predictions.meta["logit_adjustment"] = {"momentum": 0.99, "threshold": 0.95}
    cache.save_predictions(la_dir / "predictions.npz", predictions)
    run_analysis.analyze(predictions, la_dir, synthetic_runs)
    prior = {"settings": {"momentum": 0.99, "threshold": 0.95},
             "prior": [0.1, 0.2, 0.3, 0.1, 0.2, 0.1, 0.0],
             "classes": [{"wnid": str(w), "name": str(n), "prior": 1 / 6}
                         for w, n in zip(predictions.wnids, predictions.names)]}
    outputs.write_json(la_dir / "prior.json", prior)
    shutil.copy(synthetic_runs / "clip" / "histogram_recall.png", la_dir / "la_sweep.png")
    pdf_path, markdown = make_report(synthetic_runs)
    titles = list(markdown_sections(markdown))
    assert titles == SECTION_TITLES
    assert "clip-la/" not in markdown  # its figures and files are the appendix's
    _, _, rows = table_with_caption(markdown, "Summary")
    assert [row[0] for row in rows] == ["clip", "debiaspl", "clip-la"]
    # Page 5 says how much of DebiasPL's change clip-la reaches without training.
    accuracy = {model: read_json(synthetic_runs / model / "metrics.json")["accuracy"]
                for model in ("clip", "debiaspl", "clip-la")}
    trained, free = accuracy["debiaspl"] - accuracy["clip"], accuracy["clip-la"] - accuracy["clip"]
    assert (f"clip-la, change against clip: accuracy {free:+.4f} ({free / trained:.0%} of "
            f"DebiasPL's {trained:+.4f})") in markdown_sections(markdown)["Additional explanations"]

    pdf_path, markdown = make_report(synthetic_runs, appendix=True)
    titles = list(markdown_sections(markdown))
    assert titles == SECTION_TITLES + APPENDIX_TITLES + ["Appendix H"]
    assert "clip-la/pseudo_labels.png" in markdown_sections(markdown)["Appendix E"]
    body = markdown_sections(markdown)["Appendix H"]
    for expected in ("clip-la/la_sweep.png", "Settings: momentum 0.99, threshold 0.95.",
                     "clip-la/histogram_precision.png", "clip-la/confusion_matrix.png",
                     "clip-la (c): the 10 nearest class centroids", "| settings.momentum | 0.99 |",
                     "| prior | 7 values from 0 to 0.3 |", "clip-la (b) who steals from whom"):
        assert expected in body
    _, columns, rows = table_with_caption(body, "clip-la/prior.json: classes")
    assert columns == ["wnid", "name", "prior"]
    assert rows == [[c["wnid"], c["name"], "0.1667"] for c in prior["classes"]]
    assert "by true label" in markdown_sections(markdown)["Appendix D"]
    assert_headings_in_order(pdf_path, titles)


@pytest.mark.slow  # an analysis and one or two reports more: seconds
def test_long_tables_split_over_pages(tmp_path):
    predictions = synthetic_predictions("clip", 0, num_classes=70, images_per_class=2)
    run_analysis.analyze(predictions, tmp_path / "clip", tmp_path)
    pdf_path, markdown = make_report(tmp_path, appendix=True)
    texts = pdf_page_texts(pdf_path)
    appendix = [text for text in texts if "Appendix C" in text]
    assert len(appendix) >= 2  # 70 rows do not fit one page; the header says "(continued)"
    assert all("Appendix C (continued)" in text for text in appendix[1:])
    wnids_shown = {w for text in appendix for w in re.findall(r"n\d{8}", text)}
    assert wnids_shown == {str(w) for w in predictions.wnids}
    _, _, rows = table_with_caption(markdown, "Per class")
    assert [row[2] for row in rows] == read_json(tmp_path / "clip" / "metrics.json")["own_order"]


def pdfium_page_texts(path):
    """Each page's text as pdfium reads it."""
    import pypdfium2
    return [page.get_textpage().get_text_range().replace("\u00a0", " ")
            for page in pypdfium2.PdfDocument(path)]


def test_simulated_report_fits_the_homework_format(simulated_demo):
    """The demo's report of clip, debiaspl, clip-la and clip-pm on ImageNet100-sized simulated
    runs: the homework's 4 pages and the 5th of additional explanations."""
    pdf_path, markdown = simulated_demo / "report.pdf", markdown_text(simulated_demo)
    reader = pypdf.PdfReader(pdf_path)
    assert len(reader.pages) <= 5
    texts = pdf_page_texts(pdf_path)
    assert all("SIMULATED" in text for text in texts)
    first_page = pdfium_page_texts(pdf_path)[0]
    assert first_page.lstrip().startswith("Name: Ada Lovelace")  # the spec: at the top of page 1
    assert "Student ID: 12345678" in texts[0] and f"Date of submission: {datetime.now():%Y-%m-%d}" in texts[0]
    assert_headings_in_order(pdf_path, SECTION_TITLES)
    headings = dict(zip(SECTION_TITLES, section_headings(SECTION_TITLES[:6]) + ["Additional explanations: "]))
    pages = {title: [number for number, text in enumerate(texts, start=1)
                     if any(line.strip().startswith(heading) for line in text.split("\n"))]
             for title, heading in headings.items()}
    assert pages == {"Q1(a)": [1], "Q1(b)": [2], "Q1(c)": [2], "Q2(a)": [3], "Q2(b)": [4],
                     "Q2(c)": [4], "Additional explanations": [5]}
    # Every figure is labelled by its sub-question, on its page, and printed portrait.
    for number, (page, text) in enumerate(zip(reader.pages, texts), start=1):
        figures = re.findall(r"\((?:clip|debiaspl)/\w+\.png\)", text)
        assert len(figures) == {1: 2, 3: 2, 2: 1, 4: 1}.get(number, 0)
        assert page.mediabox.width < page.mediabox.height
    explanations = markdown_sections(markdown)["Additional explanations"]
    for model in ("clip-la", "clip-pm"):
        assert f"{model}, change against clip: accuracy" in explanations
    assert "Concept mismatch: the 10 classes" in explanations
    assert "crowd near 1 because CLIP's logits" in explanations  # clip's literal cosines do
    assert NOTES_HEADING in texts[4]
    assert_pages_have_ink(pdf_path)
    assert markdown.startswith("# Name: Ada Lovelace")


def test_literal_cosines_of_other_logits_are_not_said_to_crowd(built_report):
    """The synthetic runs' literal cosines run from about -0.3 to 0.1: no "crowd near 1"."""
    _, _, markdown = built_report
    assert "literal cosines, as the homework asks" in markdown and "crowd near 1" not in markdown


@pytest.mark.slow  # several analyses or reports: among the costliest of the edit-test loop
def test_hand_in_details_are_remembered_and_replaced(synthetic_runs, tmp_path, capsys):
    notes = tmp_path / "notes.md"
    notes.write_text("My **prompt** may be *wrong*.\n\n- it affects Q1\n- and Q2\n")
    report.write_report(synthetic_runs, for_out(synthetic_runs), name="Ada L.", student_id="1234", date=date(2025, 10, 8),
                        notes=notes)
    texts = pdfium_page_texts(synthetic_runs / "report.pdf")
    assert len(texts) <= 5
    assert "Name: Ada L." in texts[0] and "Student ID: 1234" in texts[0]
    assert "Date of submission: 2025-10-08" in texts[0] and "submitted 2025-10-08" in texts[0]
    assert NOTES_HEADING in texts[-1] and "My prompt may be wrong." in " ".join(texts[-1].split())
    assert "• it affects Q1" in texts[-1]
    assert capsys.readouterr().err == ""
    notes.unlink()  # remembered: the text, not the path
    report.write_report(synthetic_runs, for_out(synthetic_runs), name="")  # starter's default: not given
    texts = pdfium_page_texts(synthetic_runs / "report.pdf")
    assert "Name: Ada L." in texts[0] and "2025-10-08" in texts[0] and "My prompt" in texts[-1]
    hand_in = synthetic_runs / report.HAND_IN_FILE
    error = capsys.readouterr().err
    assert error == (f'note: kept name "Ada L.", student ID 1234, date 2025-10-08 and notes from '
                     f"{hand_in}; pass --name/--student-id/--date/--notes to change them\n")
    report.write_report(synthetic_runs, for_out(synthetic_runs), name="Grace H.")
    texts = pdfium_page_texts(synthetic_runs / "report.pdf")
    assert "Name: Grace H." in texts[0] and "Ada" not in texts[0]
    assert 'name "' not in capsys.readouterr().err
    assert read_json(hand_in) == {"name": "Grace H.", "student_id": "1234", "date": "2025-10-08",
                                  "notes": "My **prompt** may be *wrong*.\n\n- it affects Q1\n- and Q2\n"}


def test_notes_that_cannot_be_read_are_one_sentence(synthetic_runs, tmp_path):
    missing = tmp_path / "missing.md"
    with pytest.raises(outputs.UserError, match=f"{missing} does not exist: pass --notes"):
        report.write_report(synthetic_runs, for_out(synthetic_runs), notes=missing)
    latin1 = tmp_path / "notes.txt"
    latin1.write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(outputs.UserError, match=f"{latin1} is not UTF-8 text"):
        report.write_report(synthetic_runs, for_out(synthetic_runs), notes=latin1)
    assert not (synthetic_runs / "report.pdf").exists() and not (synthetic_runs / report.HAND_IN_FILE).exists()


def test_no_runs_or_damaged_json_is_one_sentence(tmp_path, capsys):
    assert starter.main(["--report", "--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error:") and "--model clip" in error and "\n" not in error
    (tmp_path / "clip").mkdir()
    (tmp_path / "clip" / "metrics.json").write_text("{not json")
    assert starter.main(["--report", "--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err.strip()
    assert "metrics.json cannot be read" in error and "Traceback" not in error
    assert not (tmp_path / "report.pdf").exists()


def test_cli_script_reports_user_errors_in_one_sentence(tmp_path):
    """As a script starter.py is __main__: report.py must raise the UserError main() catches."""
    result = subprocess.run([sys.executable, str(Path(starter.__file__)), "--report", "--out",
                             str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error:") and "Traceback" not in result.stderr


def test_wide_tables_fit_the_frame():
    """A long data path or weights name wraps inside the page instead of running off it."""
    report.register_fonts()
    styles = report.paragraph_styles()
    table = report.Table(["run", "weights", "data", "images"],
                         [["clip", "w" * 90, "/scratch/" + "x" * 200, "5000"]])
    flowable, width = report.table_flowable(table, styles, 300)
    assert width <= 300 + 1e-6 and flowable.wrap(300, 10_000)[0] <= 300 + 1e-6
    compact = report.Table(["#", "class"], [["1", "a very long class name " * 3]], compact=True)
    _, width = report.table_flowable(compact, styles, 500)
    rank_column = pdfmetrics.stringWidth("#", f"{report.FONT}-Bold", 7) + 2 * report.CELL_PADDING
    assert width <= rank_column + report.COMPACT_COLUMN_INCHES * 72 + 1e-6  # the name wraps


@pytest.mark.slow  # several analyses or reports: among the costliest of the edit-test loop
def test_runs_on_another_dataset_are_compared_apart(synthetic_runs):
    """A ViT-B-32 run on 8 other classes beside the homework's: the report takes it in, each
    dataset gets its own comparison, and the homework's Q pages stay clip's and debiaspl's."""
    other = synthetic_predictions("clip", 3, num_classes=8)
    other.meta.update(architecture="ViT-B-32", weights="openai", dataset="resisc45")
    run_dir = synthetic_runs / "resisc45-clip-ViT-B-32-openai"
    cache.save_predictions(run_dir / "predictions.npz", other)
    descriptors.write_descriptor(run_dir, other.meta)
    run_analysis.analyze(other, run_dir, synthetic_runs)
    _, markdown = make_report(synthetic_runs, appendix=True)
    assert (synthetic_runs / "comparison.png").is_file()
    assert (synthetic_runs / "comparison-resisc45-clip-ViT-B-32-openai.png").is_file()
    sections = markdown_sections(markdown)
    comparisons = [body for title, body in sections.items() if "Comparison: the runs on" in body]
    assert len(comparisons) == 2
    assert "resisc45-clip-ViT-B-32-openai" not in comparisons[0] and "debiaspl" not in comparisons[1]
    assert "CLIP ViT-B-32 (openai) zero-shot on resisc45" in markdown
    assert "Q1(a): CLIP RN50 zero-shot" in markdown


# ---------------------------------------------------------------------------------------------
# Issue 27: whose numbers, vector figures, page 1's details

def text_sizes(page):
    """{text: [(printed font size in points, whether horizontal, x, y)]} of a PDF page's text runs
    (pypdf), with the scale of the text and transformation matrices applied."""
    sizes = {}

    def visit(text, cm, tm, font, size):
        a, b = tm[0] * cm[0] + tm[1] * cm[2], tm[0] * cm[1] + tm[1] * cm[3]
        if text.strip():
            sizes.setdefault(text.strip(), []).append((size * math.hypot(a, b), abs(b) < 1e-9, cm[4], cm[5]))

    page.extract_text(visitor_text=visit)
    return sizes


def test_hand_in_figures_are_vector_with_class_names_as_text(simulated_demo):
    """Pages 1-4 of the demo's report: every class name is text on its figure's page (pdfium reads
    each whole; pypdf the printed size), at least 3.5 pt in the confusion matrices and spaced by at
    least its size; no figure is a raster image but the matrices' cells; no figure box is blank."""
    import pypdfium2
    pdf_path = simulated_demo / "report.pdf"
    names = [entry["name"] for entry in read_json(simulated_demo / "clip" / "metrics.json")["classes"]]
    reader, pages = pypdf.PdfReader(pdf_path), pdfium_page_texts(pdf_path)
    for number in (1, 2, 3, 4):
        assert all(name in pages[number - 1] for name in names), number
        raster = list(reader.pages[number - 1].images)
        assert len(raster) == {1: 0, 2: 2, 3: 0, 4: 2}[number]  # a matrix's cells and colour bar
    for number in (2, 4):  # the confusion matrices
        sizes = text_sizes(reader.pages[number - 1])
        # The matrix's names: the smallest text (the tables and notes under it are 6.5 pt or more).
        ticks = [entry for name in names if name in sizes for entry in sizes[name] if entry[0] < 6]
        assert len(ticks) >= 2 * 90  # both axes; pypdf splits a few names at their ligatures
        smallest = min(size for size, _, _, _ in ticks)
        assert smallest >= 3.5
        rows = sorted(y for _, horizontal, _, y in ticks if horizontal)  # the y axis' names
        columns = sorted(x for _, horizontal, x, _ in ticks if not horizontal)
        assert min(np.diff(rows)) >= smallest and min(np.diff(columns)) >= smallest
    # The figures fill their pages from the heading to two thirds down: every band there has ink.
    for number in (1, 2, 3, 4):
        pixels = np.asarray(pypdfium2.PdfDocument(pdf_path)[number - 1].render(scale=50 / 72)
                            .to_pil().convert("L"), dtype=float)
        for band in np.array_split(pixels[int(0.1 * len(pixels)): int(0.66 * len(pixels))], 7):
            assert (band < 200).mean() > 0.002, f"page {number} has a blank band"


def test_every_count_names_its_run_in_q2c_and_a_training_free_run(simulated_demo):
    """Counted from the caches (an independent oracle): each role's count per run, the run ranking
    it, and the ties in that run, in centroids.json, metrics.json, the terminal and the report."""
    def counts(model):
        with np.load(simulated_demo / model / "predictions.npz") as cache:
            return np.bincount(cache["logits"].argmax(axis=1), minlength=len(cache["wnids"])), cache["wnids"]

    clip_counts, wnids = counts("clip")
    markdown = markdown_text(simulated_demo)
    for model in ("debiaspl", "clip-pm"):
        own_counts, _ = counts(model)
        centroids = read_json(simulated_demo / model / "centroids.json")
        summary = read_json(simulated_demo / model / "metrics.json")
        entries = centroids["by_predicted"]["queries"] + summary["class_confusions"]
        assert {entry["role"] for entry in entries} >= {"most predicted by clip", "most predicted"}
        for entry in entries:
            index = list(wnids).index(entry["wnid"])
            ranked_by = "clip" if entry["role"].split(" with ")[0].endswith("by clip") else model
            assert entry["ranked_by"] == ranked_by
            assert entry["predicted_counts"] == {ranked_by: int((clip_counts if ranked_by == "clip" else own_counts)[index]),
                                                 **{run: int(c[index]) for run, c in (("clip", clip_counts), (model, own_counts))
                                                    if run != ranked_by}}
            ranking = clip_counts if ranked_by == "clip" else own_counts
            assert entry["tied_with"] == int(np.sum(ranking == ranking[index])) - 1
        most = next(q for q in centroids["by_predicted"]["queries"] if q["role"] == "most predicted by clip")
        assert most["wnid"] == wnids[np.argmax(clip_counts)]
        assert most["predicted_counts"] == {"clip": int(clip_counts.max()), model: int(own_counts[np.argmax(clip_counts)])}
    # Q2(c) as the report prints it: clip's count first for clip's classes, debiaspl's for its own.
    q2c = markdown_sections(markdown)["Q2(c)"]
    most = int(np.argmax(clip_counts))
    debiaspl_counts, _ = counts("debiaspl")
    assert f"{read_json(simulated_demo / 'clip' / 'metrics.json')['classes'][most]['name']}: clip {clip_counts[most]}, debiaspl {debiaspl_counts[most]} predictions" in q2c
    # The terminal: DebiasPL's count never stands alone under clip's label.
    summary = read_json(simulated_demo / "debiaspl" / "metrics.json")
    text = terminal_text.format_report(summary, read_json(simulated_demo / "debiaspl" / "centroids.json"),
                                       read_json(simulated_demo / "debiaspl" / "pseudo_labels.json"))
    least = int(np.flatnonzero(clip_counts == clip_counts.min())[-1])  # ties broken by class index
    tied = int(np.sum(clip_counts == clip_counts.min())) - 1
    ties = f" (tied with {outputs.plural(tied, 'other class', 'other classes')}, broken by class index)"
    assert (f"least predicted by clip: {summary['classes'][least]['name']} ({wnids[least]}): clip "
            f"{clip_counts[least]}{ties if tied else ''}, debiaspl {debiaspl_counts[least]} "
            "predictions") in text


@pytest.mark.parametrize("name, lines", [("Ada Lovelace", 1), ("Maximiliana Alexandra Montgomery-Fairfax", 1),
                                         ("Maximiliana Alexandra Montgomery-Fairfax von Hohenzollern", 2)])
def test_page_one_keeps_the_details_on_one_line_up_to_40_characters(synthetic_runs, name, lines):
    pdf_path, _ = make_report(synthetic_runs, name=name, student_id="1234567890", date=date(2025, 10, 8))
    first = pdf_page_texts(pdf_path)[0].split("\n")
    details = " ".join(" ".join(first[:lines]).split())
    assert details == f"Name: {name} Student ID: 1234567890 Date of submission: 2025-10-08"
    if lines == 2:  # wrapped between two fields, never inside one
        assert first[1].strip() == "Date of submission: 2025-10-08" or first[1].strip().startswith("Student ID:")
