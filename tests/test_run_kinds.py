"""The registry of run kinds (runs/kinds.py): a kind registered from here, with one entry and its
function, shows up in --help, makes its own run folder, and appears in the report and the
explorer, with no other module touched."""
import json

import numpy as np
import pytest

import starter
from cli.options import build_parser
from debias.training_free import load_clip_cache, derived_meta
from runs import cache, kinds
from runs.cache import load_predictions, write_predictions
from runs.outputs import write_json

TEST_KIND = kinds.RunKind(
    "test-flat", kinds.TRAINING_FREE, "CLIP RN50 + flattening", "a test's own kind: the source's "
    "logits with the first class's column lowered", "test_run_kinds:flatten_first_class",
    options=("source",), method="flattening", folder_suffix="flat", extra_files=("flat.json",))
LOWERED_BY = 50.0  # enough to leave the first class never predicted


def flatten_first_class(settings, out_dir, run_dir):
    """The test kind's function: what a training-free kind does, in a few lines."""
    source = load_clip_cache(out_dir, TEST_KIND.name, settings.source)
    lowered = np.array(source.logits, dtype=np.float32)
    lowered[:, 0] -= LOWERED_BY
    write_json(run_dir / "flat.json", {"lowered_by": LOWERED_BY})
    path = run_dir / "predictions.npz"
    write_predictions(path, [lowered], lowered.shape, source.labels, source.paths, source.wnids,
                      source.names, derived_meta(TEST_KIND.name, source, settings.source))
    return load_predictions(path)


@pytest.fixture
def registered():
    kinds.register(TEST_KIND)
    try:
        yield TEST_KIND
    finally:
        kinds.unregister(TEST_KIND.name)


def test_a_registered_kind_is_in_help_a_run_folder_the_report_and_the_explorer(registered, synthetic_runs):
    help_text = " ".join(build_parser().format_help().split())  # unwrapped
    assert "test-flat" in help_text and "the source's logits with the first class's column lowered" in help_text

    assert starter.main(["--model", "test-flat", "--out", str(synthetic_runs)]) == 0
    folder = synthetic_runs / "test-flat"
    descriptor = json.loads((folder / "run.json").read_text())
    assert descriptor["kind"] == kinds.TRAINING_FREE and descriptor["source"] == "clip"
    assert descriptor["title"] == "CLIP RN50 zero-shot + flattening"
    source = cache.load_predictions(synthetic_runs / "clip" / "predictions.npz")
    made = cache.load_predictions(folder / "predictions.npz")
    np.testing.assert_array_equal(made.logits[:, 0], source.logits[:, 0] - LOWERED_BY)
    summary = json.loads((folder / "metrics.json").read_text())
    first = summary["classes"][0]
    assert first["predicted_count"] == int(np.sum(made.logits.argmax(axis=1) == 0)) == 0

    assert starter.main(["--report", "--out", str(synthetic_runs)]) == 0
    report = (synthetic_runs / "report.md").read_text()
    assert "| test-flat |" in report and "test-flat on clip's cached logits" in report
    page = (synthetic_runs / "explorer.html").read_text()
    assert '"model": "test-flat"' in page or '"model":"test-flat"' in page

    # A second run of the kind on another source gets the kind's folder suffix.
    assert kinds.run_kind("test-flat").folder_suffix == "flat"


def test_a_name_is_registered_once(registered):
    with pytest.raises(ValueError, match="registered already"):
        kinds.register(TEST_KIND)


def test_a_kind_of_unknown_nature_is_refused():
    with pytest.raises(ValueError, match="nature"):
        kinds.register(kinds.RunKind("odd", "telepathy", "", "", "x:y"))
