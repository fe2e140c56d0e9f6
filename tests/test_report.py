"""`starter.py --report`: report.pdf / report.md / comparison.png, and the comparison metrics.

Runs on the `synthetic_runs` fixture (clip and debiaspl analysed from synthetic logits, no torch).
"""
import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pypdf
import pytest
from matplotlib.figure import Figure
from sklearn.metrics import f1_score

import metrics
import plotting
import report
import analysis
import outputs
import starter
from conftest import synthetic_predictions, write_synthetic_runs

SECTION_TITLES = ["Q1(a)", "Q1(b)", "Q1(c)", "Q2(a)", "Q2(b)", "Q2(c)", "Comparison", "Appendix"]
COSINE_TOLERANCE = 0.5e-4  # report shows 4 decimals


def make_report(out):
    assert starter.main(["--report", "--out", str(out)]) == 0
    return out / "report.pdf", (out / "report.md").read_text()


@pytest.fixture(scope="module")
def built_report(tmp_path_factory):
    """(OUT, report.pdf, report.md) built once for the tests that only read them."""
    out = write_synthetic_runs(tmp_path_factory.mktemp("report"))
    return (out, *make_report(out))


def pdf_page_texts(path):
    return [page.extract_text() or "" for page in pypdf.PdfReader(path).pages]


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
        predictions = outputs.load_predictions(synthetic_runs / model / "predictions.npz")
        measures = report.run_measures(read_json(synthetic_runs / model / "metrics.json"))
        expected = f1_score(predictions.labels, predictions.logits.argmax(axis=1), average="macro",
                            labels=np.unique(predictions.labels), zero_division=0)
        assert measures["macro_f1"] == pytest.approx(expected)


# ---------------------------------------------------------------------------------------------
# plotting.comparison_figure and the comparison data

def test_comparison_data_and_figure(synthetic_runs):
    runs = report.load_runs(synthetic_runs)
    comparison = report.comparison_data(runs)
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
    assert len(count_ax.lines) == 2 + 1  # one line per run, plus the balanced count
    assert len(change_ax.patches) == len(comparison.wnids)  # debiaspl's bars

    given = Figure().subplots(2, 1)
    assert plotting.comparison_figure(["a", "b"], {"clip": np.array([3, 1])}, {}, 2.0, "clip",
                                      axes=given) is given[0].figure


# ---------------------------------------------------------------------------------------------
# The report

def test_report_has_every_section_in_order(built_report):
    out, pdf_path, markdown = built_report
    assert (out / "comparison.png").is_file()
    texts = pdf_page_texts(pdf_path)
    # Each section starts a page that begins with its title.
    starts = [next(i for i, text in enumerate(texts) if text.strip().startswith(f"{title}:"))
              for title in SECTION_TITLES]
    assert starts == sorted(starts)
    first_page = texts[0]
    for expected in ("Name:", "Student ID:", "Generated", "clip-synthetic", "debiaspl-synthetic",
                     "synthetic", "60 in 6 classes", "Summary", "macro-F1", "nats"):
        assert expected in first_page
    assert list(markdown_sections(markdown)) == SECTION_TITLES
    # by_predicted comes before by_true in both (c) sections.
    for title in ("Q1(c)", "Q2(c)"):
        body = markdown_sections(markdown)[title]
        assert 0 <= body.index("### by_predicted") < body.index("### by_true")


def test_pdf_pages_are_not_blank(built_report):
    _, pdf_path, _ = built_report
    reader = pypdf.PdfReader(pdf_path)
    figure_pages = 0
    for number, page in enumerate(reader.pages, start=1):
        body = [line for line in (page.extract_text() or "").split("\n")
                if line.strip() and "Homework 3 report, generated" not in line]
        assert body, f"page {number} has nothing but its footer"
        # PdfPages lists every image in every page's resources: decode only those the page draws.
        for name in re.findall(rb"/([^\s/]+) Do", page.get_contents().get_data()):
            pixels = np.asarray(page.images["/" + name.decode()].image.convert("L"), dtype=float)
            assert pixels.std() > 1, f"page {number}: image {name} is uniform"
            figure_pages += 1
    # 3 PNGs per run (2 histograms, confusion matrix) and comparison.png, each on its own page.
    assert figure_pages == 2 * 3 + 1


def test_pdf_pages_render_with_ink(built_report):
    """Render every page (pdfium) and require ink above the footer."""
    import pypdfium2
    _, pdf_path, _ = built_report
    document = pypdfium2.PdfDocument(pdf_path)
    assert len(document) == len(pypdf.PdfReader(pdf_path).pages)
    for number, page in enumerate(document, start=1):
        pixels = np.asarray(page.render(scale=30 / 72).to_pil().convert("L"), dtype=float)
        assert (pixels[: int(0.9 * len(pixels))] < 200).mean() > 0.002, f"page {number} is blank"


def test_markdown_tables_match_the_json(built_report):
    synthetic_runs, _, markdown = built_report
    sections = markdown_sections(markdown)
    for title, model in (("Q1(c)", "clip"), ("Q2(c)", "debiaspl")):
        centroids = read_json(synthetic_runs / model / "centroids.json")
        body = sections[title]
        by_true_start = body.index("### by_true")
        for grouping, part in (("by_predicted", body[:by_true_start]), ("by_true", body[by_true_start:])):
            queries = centroids[grouping]["queries"]
            assert len(queries) == (2 if model == "clip" else 4)
            for query in queries:
                caption = f"{query['role']}: {query['name']} ({query['wnid']})"
                if not query["neighbors"]:
                    assert caption in part and query["note"] in part
                    continue
                _, columns, rows = table_with_caption(part, caption)
                assert columns == ["rank", "class", "wnid", "cosine"]
                assert [row[1:3] for row in rows] == [[n["name"], n["wnid"]] for n in query["neighbors"]]
                cosines = [float(row[3]) for row in rows]
                assert cosines == pytest.approx([n["cosine"] for n in query["neighbors"]],
                                                abs=COSINE_TOLERANCE)
                assert cosines == sorted(cosines, reverse=True)
                vector = re.search(re.escape(caption) + r".*?cosine vector: \[(.*?)\]", part, re.S)
                assert [float(v) for v in vector.group(1).split(",")] == cosines

    _, columns, rows = table_with_caption(markdown, "Summary")
    for row in rows:
        values = dict(zip(columns, row))
        saved = read_json(synthetic_runs / values["run"] / "metrics.json")
        counts = np.array([entry["predicted_count"] for entry in saved["classes"]])
        assert int(values["images"]) == saved["num_images"]
        for column, key in (("accuracy", "accuracy"), ("top-5", "top5_accuracy"),
                            ("balanced acc.", "balanced_accuracy")):
            assert float(values[column]) == pytest.approx(saved[key], abs=0.5e-4)
        p = counts[counts > 0] / counts.sum()
        assert float(values["KL to uniform (nats)"]) == pytest.approx(np.sum(p * np.log(p * len(counts))), abs=0.5e-4)
        assert float(values["count std"]) == pytest.approx(np.std(counts), abs=0.005)
        assert int(values["classes < N/(2K)"]) == int(np.sum(counts < counts.sum() / len(counts) / 2))
        if counts.min() == 0:
            assert values["max/min count"].startswith(f"inf: {np.sum(counts == 0)} class")
        else:
            assert float(values["max/min count"]) == pytest.approx(counts.max() / counts.min(), abs=0.005)

    _, columns, rows = table_with_caption(markdown, "Per class")
    clip_metrics = read_json(synthetic_runs / "clip" / "metrics.json")
    assert [row[2] for row in rows] == clip_metrics["own_order"]
    for model in ("clip", "debiaspl"):
        by_wnid = {e["wnid"]: e for e in read_json(synthetic_runs / model / "metrics.json")["classes"]}
        for row in rows:
            values = dict(zip(columns, row))
            assert int(values[f"{model} pred."]) == by_wnid[values["wnid"]]["predicted_count"]
            assert float(values[f"{model} recall"]) == pytest.approx(by_wnid[values["wnid"]]["recall"], abs=0.5e-4)

    # Figures are linked relative to OUT, where report.md is.
    for path in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown):
        assert (synthetic_runs / path).is_file()


def test_only_clip_present(synthetic_runs):
    shutil.rmtree(synthetic_runs / "debiaspl")
    pdf_path, markdown = make_report(synthetic_runs)
    sections = markdown_sections(markdown)
    assert list(sections) == SECTION_TITLES
    command = f"python starter.py --model debiaspl --out {synthetic_runs}"
    for title in ("Q2(a)", "Q2(b)", "Q2(c)"):
        assert command in sections[title]
    text = "\n".join(pdf_page_texts(pdf_path))
    assert text.count("python starter.py --model debiaspl") >= 3
    _, _, rows = table_with_caption(markdown, "Accuracy and prediction-count imbalance")
    assert [row[0] for row in rows] == ["clip"]
    assert (synthetic_runs / "comparison.png").is_file()


def test_unanalysed_run_and_missing_figure_name_the_command(synthetic_runs):
    (synthetic_runs / "debiaspl" / "metrics.json").unlink()  # cache still there: --from-cache
    (synthetic_runs / "clip" / "confusion_matrix.png").unlink()
    _, markdown = make_report(synthetic_runs)
    sections = markdown_sections(markdown)
    assert f"python starter.py --model debiaspl --from-cache --out {synthetic_runs}" in sections["Q2(a)"]
    assert "clip/confusion_matrix.png is missing" in sections["Q1(b)"]
    assert f"python starter.py --model clip --from-cache --out {synthetic_runs}" in sections["Q1(b)"]


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


def test_clip_la_section_after_q2(synthetic_runs):
    la_dir = synthetic_runs / "clip-la"
    predictions = synthetic_predictions("clip-la", 2)
    outputs.save_predictions(la_dir / "predictions.npz", predictions)
    analysis.analyze(predictions, la_dir, synthetic_runs)
    prior = {"settings": {"momentum": 0.99, "threshold": 0.95},
             "prior": [0.1, 0.2, 0.3, 0.1, 0.2, 0.1, 0.0],
             "classes": [{"wnid": str(w), "name": str(n), "prior": 1 / 6}
                         for w, n in zip(predictions.wnids, predictions.names)]}
    outputs.write_json(la_dir / "prior.json", prior)
    shutil.copy(synthetic_runs / "clip" / "histogram_recall.png", la_dir / report.LAMBDA_SWEEP_FIGURE)
    pdf_path, markdown = make_report(synthetic_runs)
    titles = list(markdown_sections(markdown))
    assert titles == SECTION_TITLES[:6] + ["clip-la"] + SECTION_TITLES[6:]
    body = markdown_sections(markdown)["clip-la"]
    for expected in ("clip-la/histogram_precision.png", "clip-la/confusion_matrix.png",
                     "clip-la/la_sweep.png", "### by_predicted", "| settings.momentum | 0.99 |",
                     "| prior | 7 values from 0 to 0.3 |"):
        assert expected in body
    _, columns, rows = table_with_caption(body, "clip-la/prior.json: classes")
    assert columns == ["wnid", "name", "prior"]
    assert rows == [[c["wnid"], c["name"], "0.1667"] for c in prior["classes"]]
    _, _, rows = table_with_caption(markdown, "Accuracy and prediction-count imbalance")
    assert [row[0] for row in rows] == ["clip", "debiaspl", "clip-la"]
    assert any(text.strip().startswith("clip-la:") for text in pdf_page_texts(pdf_path))
    # The comparison says how much of DebiasPL's change clip-la reaches without training.
    accuracy = {model: read_json(synthetic_runs / model / "metrics.json")["accuracy"]
                for model in ("clip", "debiaspl", "clip-la")}
    trained, free = accuracy["debiaspl"] - accuracy["clip"], accuracy["clip-la"] - accuracy["clip"]
    assert (f"accuracy: DebiasPL {trained:+.4f}, clip-la {free:+.4f} ({free / trained:.0%} of "
            "DebiasPL's change)") in markdown_sections(markdown)["Comparison"]


def test_long_tables_split_over_pages(tmp_path):
    predictions = synthetic_predictions("clip", 0, num_classes=70, images_per_class=2)
    analysis.analyze(predictions, tmp_path / "clip", tmp_path)
    pdf_path, _ = make_report(tmp_path)
    texts = pdf_page_texts(pdf_path)
    appendix = [text for text in texts if text.strip().startswith("Appendix:")]
    assert len(appendix) >= 2  # 70 rows do not fit one page; later pages are "(continued)"
    assert all("(continued)" in text for text in appendix[1:])
    wnids_shown = {w for text in appendix for w in re.findall(r"n\d{8}", text)}
    assert wnids_shown == {str(w) for w in predictions.wnids}


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
                             str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error:") and "Traceback" not in result.stderr
