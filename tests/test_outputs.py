"""The predictions.npz contract as something other tools write: five keys, no meta."""
import json
import subprocess
import sys

import numpy as np
import pytest

from runs import cache
from conftest import PROJECT_DIR, run_cli, synthetic_predictions


def write_five_key_cache(path, predictions):
    """What docs/cache.md's 'Bring your own logits' example writes: np.savez of the five arrays."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, logits=predictions.logits.astype(np.float64), labels=predictions.labels.astype(np.int32),
             paths=predictions.paths, wnids=predictions.wnids, names=predictions.names)


@pytest.fixture
def five_key_runs(tmp_path):
    for model, seed in (("clip", 0), ("debiaspl", 1)):
        write_five_key_cache(tmp_path / model / "predictions.npz", synthetic_predictions(model, seed))
    return tmp_path


def test_five_key_cache_loads_with_folder_name_and_unknown_provenance(five_key_runs):
    loaded = cache.load_predictions(five_key_runs / "debiaspl" / "predictions.npz")
    assert loaded.meta == {"model": "debiaspl", "provenance": cache.NO_META}
    assert loaded.logits.dtype == np.float32 and loaded.labels.dtype == np.int64
    expected = synthetic_predictions("debiaspl", 1)
    np.testing.assert_array_equal(loaded.logits, expected.logits)
    np.testing.assert_array_equal(loaded.labels, expected.labels)


@pytest.mark.slow  # several analyses or reports: among the costliest of the edit-test loop
def test_five_key_caches_run_from_cache_and_into_the_report(five_key_runs):
    for model in ("clip", "debiaspl"):
        assert run_cli("--model", model, "--from-cache", "--out", five_key_runs) == 0
    assert run_cli("--report", "--out", five_key_runs) == 0
    clip = json.loads((five_key_runs / "clip" / "metrics.json").read_text())
    debiaspl = json.loads((five_key_runs / "debiaspl" / "metrics.json").read_text())
    assert clip["model"] == "clip" and clip["settings"]["provenance"] == cache.NO_META
    assert debiaspl["order"] == clip["own_order"]
    assert cache.NO_META in (five_key_runs / "report.md").read_text()


@pytest.mark.parametrize("change, message", [
    (dict(labels=np.zeros(3, dtype=np.int64)), "`labels` must be 60 integers"),
    (dict(labels=np.full(60, 6)), "`labels` must be column indices 0..5 of the logits, but they "
                                  "range from 6 to 6"),
    (dict(logits=np.zeros((60, 6), dtype=np.int64)), "`logits` must be a float array"),
    (dict(logits=np.full((60, 6), np.nan)), "nan or inf"),
    (dict(wnids=np.array(["n01"])), "`logits` has 6 columns but `wnids` has 1 entry"),
    (dict(logits=np.zeros((60, 2))), "`logits` has 2 columns but `wnids` has 6 entries"),
    (dict(paths=np.arange(60)), "`paths` must be a 1-D array of strings"),
    (dict(names=None), "lacks `names` (str [K], the class names shown in figures); add it to "
                       "the np.savez call"),
])
def test_malformed_cache_is_one_sentence(tmp_path, capsys, change, message):
    predictions = synthetic_predictions("clip", 0)
    arrays = {key: getattr(predictions, key) for key in cache.REQUIRED_KEYS} | change
    arrays = {key: value for key, value in arrays.items() if value is not None}
    (tmp_path / "clip").mkdir()
    np.savez(tmp_path / "clip" / "predictions.npz", **arrays)
    assert run_cli("--model", "clip", "--from-cache", "--out", tmp_path) == 2
    error = capsys.readouterr().err
    assert message in error and "Bring your own logits" in error and "Traceback" not in error
    assert len(error.strip().splitlines()) == 1
    assert not (tmp_path / "clip" / "metrics.json").exists()


def test_readme_example_writes_a_cache_that_runs(tmp_path, demo_inputs):
    """docs/cache.md's 'Bring your own logits' script, saved and run as written from a folder
    outside the tool, on the generated folder; then the tool reads what it wrote."""
    readme = (PROJECT_DIR / "docs" / "cache.md").read_text()
    section = readme[readme.index("## Bring your own logits"):]
    code = section[section.index("```python\n") + len("```python\n"):section.index("```\n\nThen")]
    assert len(code.splitlines()) <= 18
    val_dir = demo_inputs.data / "val"
    script = tmp_path / "elsewhere" / "my_logits.py"
    script.parent.mkdir()
    script.write_text(
        "import numpy as np\n"
        "def my_model_logits(folder, paths, wnids):\n"
        "    return np.random.default_rng(0).normal(size=(len(paths), len(wnids)))\n"
        + code.replace("/path/to/this/tool", str(PROJECT_DIR))
        .replace("/path/to/imagenet-100/val", str(val_dir))
        .replace('OUT = f"{TOOL}/figures"', f"OUT = {str(tmp_path / 'figures')!r}"))
    result = subprocess.run([sys.executable, script.name], cwd=script.parent, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert run_cli("--model", "clip", "--from-cache", "--out", tmp_path / "figures") == 0
    summary = json.loads((tmp_path / "figures" / "clip" / "metrics.json").read_text())
    assert summary["num_images"] == len(list(val_dir.glob("*/*")))
    assert [c["wnid"] for c in summary["classes"]] == sorted(p.name for p in val_dir.iterdir())
