// The explorer's glue, for what plotly has no option for: one run choice for every view, the
// confusion matrix filled from the run's non-zero cells, a class or a cell opened where it is
// clicked, and the tables and image panels. Every string from the data is put in the page with
// textContent (never innerHTML), so a class named <script> stays text.
(function () {
  "use strict";
  const DATA = JSON.parse(document.getElementById("explorer-data").textContent);
  const K = DATA.classes.wnid.length;
  const CONFIG = {displaylogo: false, responsive: true};
  const CLASS_IMAGES = 30;  // images of a class shown at most: its cells' most confident first
  const ROW_CELLS = 10;  // cells listed of a class's row and column
  const state = {run: 0, view: "histogram", cls: 0, cell: null, drawn: {}};
  const byId = (id) => document.getElementById(id);
  const currentRun = () => DATA.runs[state.run];

  function element(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (className) node.className = className;
    return node;
  }

  function className(position) {
    return DATA.classes.name[position] + " (" + DATA.classes.wnid[position] + ")";
  }

  function classButton(position) {
    const button = element("button", DATA.classes.name[position], "link");
    button.type = "button";
    button.title = DATA.classes.wnid[position];
    button.addEventListener("click", () => openClass(position));
    return button;
  }

  function number(value, digits) {
    return value === null || value === undefined ? "undefined" : value.toFixed(digits);
  }

  // "1 image", "2 images"
  function plural(count, noun) {
    return count + " " + noun + (count === 1 ? "" : "s");
  }

  function percent(value) {
    return value === null || value === undefined ? "undefined" : (100 * value).toFixed(1) + "%";
  }

  function viewTitle(view, text) {
    document.querySelector("#view-" + view + " .view-title").textContent = text;
  }

  // A plotly figure of the page, copied (plotly keeps and changes what it is given), with a
  // handler for clicks on its points.
  function plot(id, figure, onClick) {
    const div = byId(id);
    const drawn = Plotly.react(div, structuredClone(figure.data), structuredClone(figure.layout), CONFIG);
    if (onClick && !div.dataset.clicks) {
      div.on("plotly_click", (event) => onClick(event.points[0]));
      div.dataset.clicks = "yes";
    }
    return drawn;
  }

  const openClassOfPoint = (point) => openClass(point.pointIndex);

  // ---- 1 predictions per class
  function drawHistogram() {
    viewTitle("histogram", currentRun().title + ": predictions per class, with precision and " +
              "recall, classes in " + DATA.runs[0].model + "'s order (most to least predicted by it)");
    return plot("plot-histogram", DATA.figures.histogram[state.run], openClassOfPoint);
  }

  // ---- 2 confusion matrix
  function confusionFigure(run) {
    const z = Array.from({length: K}, () => new Array(K).fill(null));
    const counts = Array.from({length: K}, () => new Array(K).fill(0));
    const [trues, predicteds, sizes] = run.cells;
    let largest = 1;
    for (let i = 0; i < sizes.length; i++) {
      z[trues[i]][predicteds[i]] = Math.log10(sizes[i]);
      counts[trues[i]][predicteds[i]] = sizes[i];
      largest = Math.max(largest, sizes[i]);
    }
    const ticks = [];  // 1, 2, 5, 10, 20, 50, ... up to the largest cell
    for (let decade = 1; decade <= largest; decade *= 10) {
      for (const step of [1, 2, 5]) if (step * decade <= largest) ticks.push(step * decade);
    }
    const figure = structuredClone(DATA.figures.confusion);
    Object.assign(figure.data[0], {z: z, customdata: counts, zmax: Math.max(Math.log10(largest), 0.5)});
    figure.data[0].colorbar.tickvals = ticks.map(Math.log10);
    figure.data[0].colorbar.ticktext = ticks.map(String);
    return figure;
  }

  function drawConfusion() {
    const run = currentRun();
    viewTitle("confusion", run.title + ": confusion matrix (true class down, predicted across), " +
              "classes in " + DATA.runs[0].model + "'s order");
    const list = byId("top-confusions");
    list.replaceChildren();
    for (const [trueClass, predicted, count, share] of run.top_confusions) {
      const item = element("li");
      const open = element("button", count + " of " + DATA.classes.name[trueClass] + " → " +
                           DATA.classes.name[predicted] + " (" + percent(share) + ")", "link");
      open.type = "button";
      open.addEventListener("click", () => showCell(trueClass, predicted));
      item.append(open);
      list.append(item);
    }
    if (state.cell) showCell(...state.cell);
    return plot("plot-confusion", confusionFigure(run),
                (point) => showCell(point.pointIndex[0], point.pointIndex[1]));
  }

  function cellSize(run, trueClass, predicted) {
    const [trues, predicteds, sizes] = run.cells;
    for (let i = 0; i < sizes.length; i++) {
      if (trues[i] === trueClass && predicteds[i] === predicted) return sizes[i];
    }
    return 0;
  }

  function showCell(trueClass, predicted) {
    state.cell = [trueClass, predicted];
    const run = currentRun();
    const panel = byId("cell-images");
    panel.replaceChildren();
    const heading = element("h3", run.model + ": " + plural(cellSize(run, trueClass, predicted), "image") +
                            " of ");
    heading.append(classButton(trueClass));
    if (trueClass === predicted) heading.append(" predicted correctly");
    else heading.append(" predicted as ", classButton(predicted));
    panel.append(heading);
    const entries = (run.images.cells[trueClass + " " + predicted] || []).map(
      ([image, probability]) => [image, probability, trueClass, predicted]);
    imagePanel(panel, run, entries);
    panel.scrollIntoView({block: "nearest"});
  }

  // ---- images (view 6): a cell's or a class's, in the confusion and class views
  function imagePanel(panel, run, entries) {
    if (run.images.note) {
      panel.append(element("p", "Images: " + run.images.note, "note"));
      return;
    }
    const shown = entries.length + " shown (at most " + DATA.images_per_cell +
                  " per confusion cell, the most confident first" +
                  (DATA.images_limited ? "; this page embeds at most " + DATA.image_limit +
                   " images, each cell's most confident first" : "") + ").";
    panel.append(element("p", shown, "hint"));
    const grid = element("div", null, "image-grid");
    for (const [image, probability, trueClass, predicted] of entries) {
      grid.append(imageCard(DATA.images[image], probability, trueClass, predicted));
    }
    panel.append(grid);
  }

  function imageCard([path, thumbnail, why], probability, trueClass, predicted) {
    const card = element("div", null, "image-card");
    if (thumbnail) {
      const image = element("img");
      image.src = "data:image/jpeg;base64," + thumbnail;
      image.alt = path;
      card.append(image);
    } else {
      card.append(element("div", why, "missing"));
    }
    card.append(element("div", path), element("div", "true: " + className(trueClass)),
                element("div", "predicted: " + className(predicted)),
                element("div", "probability " + probability.toFixed(3)));
    return card;
  }

  // ---- 3 one class, every run side by side
  function openClass(position) {
    state.cls = position;
    byId("class-choice").value = String(position);
    delete state.drawn.class;
    show("class");
  }

  function cellsOf(run, position, axis) {
    const [trues, predicteds, sizes] = run.cells;
    const mine = axis === "row" ? trues : predicteds;
    const other = axis === "row" ? predicteds : trues;
    const found = [];
    for (let i = 0; i < sizes.length; i++) {
      if (mine[i] === position) found.push([other[i], sizes[i]]);
    }
    return found.sort((a, b) => b[1] - a[1] || a[0] - b[0]);
  }

  function table(caption, headers, rows) {
    const node = element("table", null, "numbers");
    node.append(element("caption", caption));
    const head = element("tr");
    for (const header of headers) head.append(element("th", header));
    node.append(head);
    for (const cells of rows) {
      const row = element("tr");
      for (const cell of cells) {
        const td = element("td");
        td.append(cell);
        row.append(td);
      }
      node.append(row);
    }
    return node;
  }

  function cellRows(run, position, axis) {
    return cellsOf(run, position, axis).slice(0, ROW_CELLS).map(([other, size]) => {
      const name = other === position ? element("span", "itself (correct)", "itself") : classButton(other);
      return [name, String(size)];
    });
  }

  function neighbourTable(run, position, kind, caption, digits) {
    const rows = run.neighbours[kind][position].map(([other, cosine]) =>
      [classButton(other), cosine.toFixed(digits)]);
    const node = table(caption, ["class", "cosine"], rows);
    if (!rows.length) {
      node.append(element("tr", "no centroid in " + run.model + ": " + run.model + " predicts no image as this class"));
    }
    return node;
  }

  // CAP's concept mismatch, for a run that keeps CLIP's features (its why.json).
  function conceptTable(concepts, position) {
    const nearest = concepts.own_text_nearest[position] ? "its own" : concepts.nearest_text[position];
    const flagged = concepts.mismatched === null
      ? "not run (python starter.py --model clip-ca)"
      : (concepts.mismatched[position] ? "concept-mismatched" : "not flagged");
    return table("concept mismatch (CAP)", ["", ""], [
      ["concept gap: cosine of its text and its images' mean", number(concepts.gap[position], 3)],
      ["text nearest its images", nearest === null ? "none (no image)" : nearest],
      ["Algorithm 1 (clip-ca)", flagged]]);
  }

  function classColumn(run, position) {
    const column = element("div", null, "run-column");
    column.append(element("h3", run.title));
    column.append(table("numbers", ["", ""], [
      ["predictions by " + run.model, String(run.predicted[position])], ["images (true)", String(run.true[position])],
      ["precision", number(run.precision[position], 3)], ["recall", number(run.recall[position], 3)],
      ["kept at τ = " + run.kept_threshold, run.kept[position] + " (" + run.kept_correct[position] +
       " correct)"]]));
    column.append(table("where its images go (its row)", ["predicted as", "images"],
                        cellRows(run, position, "row")));
    column.append(table("who feeds it (its column)", ["true class", "images"],
                        cellRows(run, position, "column")));
    if (run.concepts) column.append(conceptTable(run.concepts, position));
    column.append(neighbourTable(run, position, "literal",
                                 "10 nearest centroids, mean logits by predicted label", 6));
    column.append(neighbourTable(run, position, "centered",
                                 "10 nearest centroids, centered (minus each image's mean logit)", 4));
    return column;
  }

  function classImages(run, position) {
    const entries = [];
    for (const [other] of cellsOf(run, position, "column")) {
      for (const [image, probability] of run.images.cells[other + " " + position] || []) {
        entries.push([image, probability, other, position]);
      }
    }
    return entries.sort((a, b) => b[1] - a[1]).slice(0, CLASS_IMAGES);
  }

  function drawClass() {
    const position = state.cls;
    viewTitle("class", className(position) + ": " + (position + 1) + ". of " + K + " in " +
              DATA.runs[0].model + "'s order, in every run; predictions: " +
              DATA.runs.map((run) => run.model + " " + run.predicted[position]).join(", "));
    const columns = byId("class-runs");
    columns.replaceChildren(...DATA.runs.map((run) => classColumn(run, position)));
    const panel = byId("class-images");
    panel.replaceChildren(element("h3", currentRun().model + ": images predicted as " +
                                  className(position)));
    imagePanel(panel, currentRun(), classImages(currentRun(), position));
  }

  // ---- 4 runs compared
  function drawCompare() {
    viewTitle("compare", "Every run against " + DATA.runs[0].model);
    const rows = DATA.runs.map((run) => {
      const s = run.summary;
      return [run.title, String(s.images), percent(s.accuracy), percent(s.balanced_accuracy),
              percent(s.top5_accuracy),
              s.max_min_ratio === null ? "∞ (a class has none)" : s.max_min_ratio.toFixed(2),
              String(s.classes_without_predictions), percent(s.kept_share), percent(s.kept_accuracy)];
    });
    byId("run-table").replaceChildren(table("the runs", [
      "run", "images", "accuracy", "balanced accuracy", "top-5", "most / least predicted",
      "classes never predicted", "kept at τ = " + DATA.runs[0].summary.kept_threshold,
      "accuracy of kept"], rows));
    if (DATA.runs.length < 2) {
      byId("plot-compare").replaceChildren(element("p", "Only " + DATA.runs[0].model +
                                                    " is in this folder: nothing to compare.", "note"));
      return Promise.resolve();
    }
    return plot("plot-compare", DATA.figures.compare, openClassOfPoint);
  }

  // ---- 5 pseudo-label selection
  function drawSelection() {
    viewTitle("selection", currentRun().title + ": the pseudo-labels a semi-supervised learner " +
              "would keep, per class (" + DATA.runs[0].model + "'s order)");
    return plot("plot-selection", DATA.figures.selection[state.run], openClassOfPoint);
  }

  const DRAW = {histogram: drawHistogram, confusion: drawConfusion, class: drawClass,
                compare: drawCompare, selection: drawSelection};
  const FOLLOWS_RUN = {histogram: true, confusion: true, class: true, selection: true};

  function show(view) {
    state.view = view;
    for (const name of Object.keys(DRAW)) {
      byId("view-" + name).hidden = name !== view;
      document.querySelector('#tabs [data-view="' + name + '"]').classList.toggle("active", name === view);
    }
    if (state.drawn[view] === state.run || (state.drawn[view] !== undefined && !FOLLOWS_RUN[view])) {
      return Promise.resolve();
    }
    state.drawn[view] = state.run;
    return Promise.resolve(DRAW[view]());
  }

  function setUp() {
    byId("page-title").textContent = document.title;
    const runChoice = byId("run-choice");
    DATA.runs.forEach((run, index) => {
      const option = element("option", run.title);
      option.value = run.model;
      runChoice.append(option);
    });
    runChoice.addEventListener("change", () => {
      state.run = runChoice.selectedIndex;
      show(state.view);
    });
    const classChoice = byId("class-choice");
    DATA.classes.name.forEach((name, position) => {
      const option = element("option", (position + 1) + ". " + className(position));
      option.value = String(position);
      classChoice.append(option);
    });
    classChoice.addEventListener("change", () => openClass(Number(classChoice.value)));
    for (const button of document.querySelectorAll("#tabs button")) {
      button.addEventListener("click", () => show(button.dataset.view));
    }
    // The benchmark and the tests read when the first view was drawn.
    show("histogram").then(() => { document.body.dataset.firstDrawnMs = String(performance.now()); });
  }

  setUp();
})();
