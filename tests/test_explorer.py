"""OUT/explorer.html: what it holds, what it never reads, and, in headless Chromium (Debian's
chromium and chromium-driver; these tests skip without them), what a reader sees and clicks.

One browser serves the whole module; the run folders are tiny. Each view's screenshot is written
under the module's temporary folder (printed with -s) to look at."""
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from analysis import run_analysis
from runs import cache
from analysis import concepts
import metrics
from analysis import pseudo_labels
from analysis import why
from conftest import run_cli, synthetic_predictions
import explorer
from cli.commands import for_out
from explorer import DEFAULT_THUMBNAILS, EXPLORER_FILE
from explorer.browser import (console_errors, headless_chromium, missing_browser, open_explorer,
                              requested_urls, save_page_screenshot)
from explorer.images import MISSING, OUTSIDE, contained_file
from explorer.page import embedded_json
from explorer.contents import embedded_images
from explorer.run_data import find_runs, tables_in_order
from analysis.explorer_tables import nearest_table
from runs.outputs import write_json
from runs.kinds import kind_names

VIEWS = ("histogram", "confusion", "class", "compare", "selection")
# Class names a cache may hold: none may run as script or turn into markup anywhere in the page.
HOSTILE_NAMES = ["<script>window.pwned = 1</script>", '<img src=x onerror="window.pwned = 2">',
                 "</script><script>window.pwned = 3</script>", "&lt;b&gt; stays &amp; as typed",
                 "$x^2$ <b>bold</b> & <a href='javascript:window.pwned=4'>link</a>", "a plain class"]


def write_explorer(out, thumbnails=DEFAULT_THUMBNAILS):
    """The page of OUT, as --explore writes it."""
    return explorer.write_explorer(out, for_out(out), thumbnails)


# ---- without a browser

def test_nearest_table_is_metrics_nearest_centroids_for_every_class():
    rng = np.random.default_rng(0)
    centroids = rng.normal(size=(30, 12))
    centroids[[3, 17]] = np.nan  # empty groups
    centroids[8] = centroids[5] * 2.0  # a tie in cosine, broken by class index
    table, table_cosines = nearest_table(concepts.cosine_matrix(centroids, centroids), count=10)
    for query in range(len(centroids)):
        neighbours, cosines = metrics.nearest_centroids(centroids, query, 10)
        defined = table[query] >= 0
        assert table[query][defined].tolist() == neighbours.tolist()
        np.testing.assert_allclose(table_cosines[query][defined], cosines, atol=1e-12)


def test_paths_that_leave_the_image_folder_are_not_read(tmp_path):
    root = tmp_path / "images"
    (root / "a").mkdir(parents=True)
    (root / "a" / "in.jpg").write_bytes(b"x")
    (tmp_path / "secret.jpg").write_bytes(b"x")
    (root / "a" / "link-out.jpg").symlink_to(tmp_path / "secret.jpg")
    (root / "a" / "link-in.jpg").symlink_to(root / "a" / "in.jpg")
    root = root.resolve()
    assert contained_file(root, "a/in.jpg") == (root / "a" / "in.jpg", None)
    assert contained_file(root, "a/link-in.jpg") == (root / "a" / "in.jpg", None)
    for path in ("../secret.jpg", "a/../../secret.jpg", str(tmp_path / "secret.jpg"), "a/link-out.jpg"):
        assert contained_file(root, path) == (None, OUTSIDE), path
    assert contained_file(root, "a/none.jpg") == (None, MISSING)
    assert contained_file(root, "a/nul\0.jpg") == (None, MISSING)


def test_embedded_json_cannot_close_its_script_element():
    data = {"name": "</script><script>alert(1)</script> & <!-- -->", "n": [1, None]}
    text = embedded_json(data)
    assert not {"<", ">", "&"} & set(text) and json.loads(text) == data


def test_explore_writes_the_page_alone_and_names_the_fix_without_runs(synthetic_runs, capsys):
    assert run_cli("--explore", "--out", synthetic_runs) == 0
    assert (synthetic_runs / EXPLORER_FILE).is_file() and not (synthetic_runs / "report.pdf").exists()
    train = synthetic_runs / "train"  # a train split's runs are explored the same way
    for model in ("clip", "debiaspl"):
        shutil.copytree(synthetic_runs / model, train / model)
    assert run_cli("--explore", "--split", "train", "--out", synthetic_runs) == 0
    assert (train / EXPLORER_FILE).is_file()
    empty = synthetic_runs / "empty"
    assert run_cli("--explore", "--out", empty) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error:") and "--model clip" in error and "\n" not in error


def test_an_outdated_run_is_left_out_with_the_command(synthetic_runs, capsys):
    (synthetic_runs / "debiaspl" / "pseudo_labels.json").unlink()
    assert run_cli("--explore", "--out", synthetic_runs) == 0
    assert f"--model debiaspl --from-cache --out {synthetic_runs}" in capsys.readouterr().err
    assert [run["model"] for run in page_data(synthetic_runs / EXPLORER_FILE)["runs"]] == ["clip"]


def test_the_explorer_never_reads_the_logits(synthetic_runs, monkeypatch):
    """What it shows comes from the analysis' files (explorer.npz): no predictions.npz needed."""
    page = write_explorer(synthetic_runs)
    for model in ("clip", "debiaspl"):
        (synthetic_runs / model / "predictions.npz").unlink()
    monkeypatch.setattr(cache, "load_predictions", lambda *args: pytest.fail("read the logits"))
    assert page_data(write_explorer(synthetic_runs)) == page_data(page)


def test_the_class_view_holds_each_classs_concept_gap_and_algorithm_1s_verdict(real_runs, tmp_path):
    """The verdicts come from clip's why.json (the analysis runs Algorithm 1), else clip-ca's."""
    shutil.copytree(real_runs / "clip", tmp_path / "clip")
    gaps = {entry["wnid"]: entry for entry in
            json.loads((tmp_path / "clip" / "why.json").read_text())["concepts"]["gap"]["by_true"]}
    order = json.loads((tmp_path / "clip" / "metrics.json").read_text())["own_order"]
    concept_rows = page_data(write_explorer(tmp_path))["runs"][0]["concepts"]
    assert concept_rows["gap"] == [gaps[wnid]["cosine"] for wnid in order]
    assert concept_rows["own_text_nearest"] == [gaps[wnid]["own_text_nearest"] for wnid in order]
    # Algorithm 1's verdicts from clip's own why.json, as its analysis wrote them.
    diagnosis = json.loads((tmp_path / "clip" / "why.json").read_text())
    found = {entry["wnid"] for entry in diagnosis["concepts"]["mismatch"]["mismatched"]}
    assert concept_rows["mismatched"] == [wnid in found for wnid in order]
    # A why.json from before the analysis ran it: clip-ca's alignment.json, once it has run.
    del diagnosis["concepts"]["mismatch"]
    write_json(tmp_path / "clip" / "why.json", diagnosis)
    assert page_data(write_explorer(tmp_path))["runs"][0]["concepts"]["mismatched"] is None
    write_json(tmp_path / "clip-ca" / why.ALIGNMENT_FILE, {"mismatched": [{"wnid": order[2]}]})
    assert page_data(write_explorer(tmp_path))["runs"][0]["concepts"]["mismatched"] == [
        position == 2 for position in range(len(order))]


def page_data(page):
    text = Path(page).read_text()
    start = text.index('<script type="application/json" id="explorer-data">')
    start = text.index(">", start) + 1
    return json.loads(text[start:text.index("</script>", start)])


# ---- run folders to explore

@pytest.fixture(scope="module")
def screenshots(tmp_path_factory):
    folder = tmp_path_factory.mktemp("explorer-screenshots")
    print(f"\nexplorer screenshots in {folder}")
    return folder


@pytest.fixture(scope="module")
def synthetic_page(analysed_synthetic_runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("explored-synthetic")
    shutil.copytree(analysed_synthetic_runs, out, dirs_exist_ok=True)
    return write_explorer(out)


@pytest.fixture(scope="module")
def real_page(real_runs, tmp_path_factory):
    """The explorer of clip and debiaspl over generated JPEGs, 2 images per cell."""
    out = tmp_path_factory.mktemp("explored-real")
    for model in ("clip", "debiaspl"):
        shutil.copytree(real_runs / model, out / model)
    return write_explorer(out, thumbnails=2)


@pytest.fixture(scope="module")
def hostile_out(tmp_path_factory):
    """A clip run whose class names hold HTML and script and some of whose paths leave the image
    folder: `..`, an absolute path and a symlink to a JPEG outside it."""
    base = tmp_path_factory.mktemp("hostile")
    predictions = synthetic_predictions("clip", 0, bias=[1.5, 1.0, 0.5, 0, -0.5, -1.0])
    images = base / "images"
    for index, path in enumerate(predictions.paths):
        (images / path).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (40, 30), (40 * (index % 6), 90, 160)).save(images / path)
    secret = base / "secret.jpg"
    Image.new("RGB", (40, 30), (255, 0, 0)).save(secret)
    (images / predictions.paths[2]).unlink()
    (images / predictions.paths[2]).symlink_to(secret)
    paths = predictions.paths.astype(object)
    paths[0], paths[1] = "../secret.jpg", str(secret)
    predictions.paths, predictions.names = paths.astype(str), np.array(HOSTILE_NAMES)
    predictions.meta["data"] = str(images)
    out = base / "out"
    cache.save_predictions(out / "clip" / "predictions.npz", predictions)
    run_analysis.analyze(predictions, out / "clip", out)
    return out, secret


@pytest.fixture(scope="module")
def hostile_page(hostile_out):
    """The hostile run's explorer, every image of every cell embedded; the files opened while
    it was written."""
    out, _ = hostile_out
    opened, recording = [], [True]
    sys.addaudithook(lambda event, args: opened.append(args[0]) if recording[0] and event == "open"
                     and isinstance(args[0], (str, Path)) else None)
    try:
        page = write_explorer(out, thumbnails=100)
    finally:
        recording[0] = False
    return page, opened


def test_hostile_cache_reads_nothing_outside_and_escapes_every_string(hostile_out, hostile_page):
    (out, secret), (page, opened) = hostile_out, hostile_page
    assert secret.resolve() not in {Path(path).resolve() for path in opened}
    assert any(str(path).endswith(".JPEG") for path in opened)  # the images inside were read
    text = page.read_text()
    assert text.count("</script") == 3  # the data, plotly.js and the glue: no name closes one
    assert "<script>window" not in text and "<img src=x" not in text
    data = page_data(page)
    assert sorted(data["classes"]["name"]) == sorted(HOSTILE_NAMES)
    notes = {path: note for path, thumbnail, note in data["images"]}
    linked = str(cache.load_predictions(out / "clip" / "predictions.npz").paths[2])
    assert notes["../secret.jpg"] == notes[str(secret)] == notes[linked] == OUTSIDE
    assert sum(thumbnail is not None for _, thumbnail, _ in data["images"]) == len(notes) - 3


def test_the_image_limit_keeps_each_cells_most_confident_image_first(hostile_out):
    run = find_runs(hostile_out[0], for_out(hostile_out[0]))[0]
    tables = tables_in_order(run, run.metrics["own_order"])
    cells = tables.cells.shape[1]
    images, runs, limited = embedded_images([run], [tables], per_cell=100, limit=cells)
    assert limited and len(images) == cells
    assert sorted(len(entries) for entries in runs[0]["cells"].values()) == [1] * cells


# ---- in the browser

@pytest.fixture(scope="module")
def browser():
    missing = missing_browser()
    if missing:
        pytest.skip(f"no headless Chromium: {missing}")
    driver = headless_chromium()
    yield driver
    driver.quit()


def open_page(browser, page):
    """Open the page; its first view must be drawn with no console error and nothing fetched."""
    requested_urls(browser), console_errors(browser)  # forget the previous page's
    open_explorer(browser, page)
    assert console_errors(browser) == []
    assert {url for url in requested_urls(browser) if not url.startswith("data:")} == {page.as_uri()}


def script(browser, code, *args):
    return browser.execute_script(code, *args)


def show_view(browser, view):
    from selenium.webdriver.common.by import By
    browser.find_element(By.CSS_SELECTOR, f'#tabs [data-view="{view}"]').click()
    wait_for(browser, f"return !document.getElementById('view-{view}').hidden")


def wait_for(browser, condition, *args, timeout=120):  # a hang guard: it returns once the condition holds
    from selenium.webdriver.support.ui import WebDriverWait
    return WebDriverWait(browser, timeout).until(lambda driver: driver.execute_script(condition, *args))


def hover_bar(browser, position):
    """Move the mouse onto the histogram's bar of a class; the hover label's text."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    bars = browser.find_elements(By.CSS_SELECTOR, "#plot-histogram .barlayer .point path")
    script(browser, "Plotly.Fx.unhover('plot-histogram')")  # no label of the bar hovered before
    ActionChains(browser).move_to_element(bars[position]).perform()
    return wait_for(browser, "const label = document.querySelector('#plot-histogram .hoverlayer .hovertext');"
                             " return label && label.textContent")


def click_here(browser):
    from selenium.webdriver.common.action_chains import ActionChains
    ActionChains(browser).click().perform()


def class_column_tables(browser, column):
    """{caption: [first cells]} of a run's column in the class view."""
    return script(browser, """
        const column = document.querySelectorAll('#class-runs .run-column')[arguments[0]];
        const tables = {};
        for (const table of column.querySelectorAll('table')) {
          tables[table.caption.textContent] = [...table.querySelectorAll('tr')].slice(1)
            .map((row) => row.cells[0] ? row.cells[0].textContent : row.textContent);
        }
        return tables;""", column)


def screenshot_views(browser, folder, name):
    for view in VIEWS:
        show_view(browser, view)
        save_page_screenshot(browser, folder / f"{name}-{view}.png")


def test_histogram_hover_click_class_view_and_run_switch(browser, synthetic_page):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select
    out = synthetic_page.parent
    clip = json.loads((out / "clip" / "metrics.json").read_text())
    debiaspl = json.loads((out / "debiaspl" / "metrics.json").read_text())
    open_page(browser, synthetic_page)
    assert len(browser.find_elements(By.CSS_SELECTOR, "#plot-histogram .barlayer .point")) == 6
    by_wnid = {run["model"]: {entry["wnid"]: entry for entry in run["classes"]} for run in (clip, debiaspl)}
    for position in (0, 4):
        entry = by_wnid["clip"][clip["own_order"][position]]
        label = hover_bar(browser, position)
        assert entry["name"] in label and f"predicted: {entry['predicted_count']}" in label
    # The most predicted class's bar opens the class view with centroids.json's neighbours.
    hover_bar(browser, 0)
    click_here(browser)
    wait_for(browser, "return !document.getElementById('view-class').hidden")
    centroids = json.loads((out / "clip" / "centroids.json").read_text())
    tables = class_column_tables(browser, 0)
    for part, caption in ((centroids, "10 nearest centroids, mean logits by predicted label"),
                          (centroids["centered"], "10 nearest centroids, centered (minus each "
                                                  "image's mean logit)")):
        query = next(q for q in part["by_predicted"]["queries"] if q["role"] == "most predicted")
        assert tables[caption] == [neighbour["name"] for neighbour in query["neighbors"]]
    # Every run's count of the class, each named by its run.
    wnid = clip["own_order"][0]
    title = browser.execute_script("return document.querySelector('#view-class .view-title').textContent")
    assert title.endswith(f"predictions: clip {by_wnid['clip'][wnid]['predicted_count']}, debiaspl "
                          f"{by_wnid['debiaspl'][wnid]['predicted_count']}")
    # Another run: its counts, in clip's order.
    show_view(browser, "histogram")
    Select(browser.find_element(By.ID, "run-choice")).select_by_value("debiaspl")
    wait_for(browser, "return document.querySelector('#view-histogram .view-title').textContent"
                      ".startsWith('DebiasPL')")
    for position in (0, 4):
        entry = by_wnid["debiaspl"][clip["own_order"][position]]
        assert f"predicted: {entry['predicted_count']}" in hover_bar(browser, position)
    # The selection view: τ = 0 on its slider keeps every pseudo-label.
    show_view(browser, "selection")
    from selenium.webdriver.common.action_chains import ActionChains
    ActionChains(browser).move_to_element(browser.find_element(
        By.CSS_SELECTOR, "#plot-selection .slider-group .slider-label")).click().perform()
    summary = wait_for(browser, "const text = document.querySelector('#plot-selection "
                                ".annotation-text').textContent; return text.includes('= 0:') && text")
    assert f"100.0% of the images ({debiaspl['num_images']})" in summary
    assert console_errors(browser) == []


def click_cell(browser, true_position, predicted_position):
    """Scroll the confusion matrix's cell to the window's middle and click it there."""
    from selenium.webdriver.common.action_chains import ActionBuilder
    x, y = script(browser, """
        const gd = document.getElementById('plot-confusion');
        const x = gd._fullLayout.xaxis, y = gd._fullLayout.yaxis;
        const top = () => gd.getBoundingClientRect().top + y._offset + y.c2p(arguments[0]);
        window.scrollBy(0, top() - window.innerHeight / 2);
        return [gd.getBoundingClientRect().left + x._offset + x.c2p(arguments[1]), top()];""",
                  true_position, predicted_position)
    actions = ActionBuilder(browser)
    actions.pointer_action.move_to_location(int(x), int(y)).click()
    actions.perform()


def most_confident_of_cell(run_dir, order, true_position, predicted_position, count):
    """The paths of a cell's `count` most confident images, computed from the cache."""
    predictions = cache.load_predictions(run_dir / "predictions.npz")
    position = {wnid: index for index, wnid in enumerate(order)}
    column = np.array([position[str(wnid)] for wnid in predictions.wnids])
    confidence = pseudo_labels.top_probability(predictions.logits)
    in_cell = np.flatnonzero((column[predictions.labels] == true_position)
                             & (column[metrics.predicted_labels(predictions.logits)] == predicted_position))
    ranked = in_cell[np.lexsort((in_cell, -confidence[in_cell]))][:count]
    return [str(predictions.paths[index]) for index in ranked]


def test_a_confusion_cell_shows_its_most_confident_images(browser, real_page, screenshots):
    from selenium.webdriver.common.by import By
    out = real_page.parent
    clip = json.loads((out / "clip" / "metrics.json").read_text())
    open_page(browser, real_page)
    show_view(browser, "confusion")
    cells = page_data(real_page)["runs"][0]["cells"]
    largest = int(np.argmax(cells[2]))
    true_position, predicted_position = cells[0][largest], cells[1][largest]
    click_cell(browser, true_position, predicted_position)
    wait_for(browser, "return document.querySelectorAll('#cell-images .image-card').length > 0")
    cards = script(browser, """return [...document.querySelectorAll('#cell-images .image-card')].map(
        (card) => [card.querySelector('img') && card.querySelector('img').src.slice(0, 23),
                   card.children[1].textContent]);""")
    expected = most_confident_of_cell(out / "clip", clip["own_order"], true_position,
                                      predicted_position, 2)
    assert [path for _, path in cards] == expected
    assert all(source == "data:image/jpeg;base64," for source, _ in cards)
    heading = browser.find_element(By.CSS_SELECTOR, "#cell-images h3").text
    assert f"{cells[2][largest]} images of" in heading
    screenshot_views(browser, screenshots, "real")
    show_view(browser, "class")
    assert "concept mismatch (CAP)" in class_column_tables(browser, 0)  # clip keeps its features
    assert console_errors(browser) == []


def test_hostile_names_stay_text_and_no_script_from_the_data_runs(browser, hostile_page):
    page, _ = hostile_page
    open_page(browser, page)
    data = page_data(page)
    for position, name in enumerate(data["classes"]["name"]):
        if data["runs"][0]["predicted"][position]:  # a class never predicted has no bar to hover
            assert name in hover_bar(browser, position)  # the name as typed
    options = script(browser, "return [...document.querySelectorAll('#class-choice option')]"
                              ".map((option) => option.textContent)")
    assert all(name in option for name, option in zip(data["classes"]["name"], options))
    hover_bar(browser, 0)
    click_here(browser)
    heading = wait_for(browser, "return !document.getElementById('view-class').hidden && "
                                "document.querySelector('#view-class .view-title').textContent")
    assert heading.startswith(data["classes"]["name"][0])
    outside = script(browser, """return [...document.querySelectorAll('#class-images .image-card')]
        .filter((card) => !card.querySelector('img')).map((card) => card.textContent);""")
    assert script(browser, "return window.pwned === undefined && "
                           "document.querySelectorAll('img[src=\"x\"], a[href^=\"javascript\"]').length === 0")
    assert console_errors(browser) == []
    assert len(outside) == 3 and all(OUTSIDE in text for text in outside)


def test_the_demo_writes_an_explorer_of_its_simulated_runs(browser, simulated_demo):
    page = simulated_demo / EXPLORER_FILE
    data = page_data(page)
    assert [run["model"] for run in data["runs"]] == [
        model for model in kind_names() if (simulated_demo / model / "metrics.json").is_file()]
    assert len(data["runs"]) >= 4  # clip, debiaspl, clip-la, clip-pm at least
    assert all("SIMULATED" in run["images"]["note"] for run in data["runs"])
    open_page(browser, page)
    show_view(browser, "confusion")  # the view with the most to draw: 100 x 100 cells
    assert console_errors(browser) == []
