"""--bundle: the homework's code ZIP holds the tool's code in one folder and nothing it must not."""
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest

from report import bundle
from conftest import PROJECT_DIR, run_cli

FORBIDDEN = (".npz", ".pt", ".pth", ".pth.tar", ".png", ".pdf", ".npy")  # JSON: outputs are tested above


def test_bundle_holds_the_code_in_one_folder_and_no_weights_or_outputs(tmp_path):
    project = tmp_path / "project"
    for relative in ("starter.py", "README.md", "requirements.txt", "tests/test_x.py",
                     "explorer/page.html"):
        (project / relative).parent.mkdir(parents=True, exist_ok=True)
        (project / relative).write_text("code")
    for relative in ("RN50.pt", "debiaspl_zsl_epoch50.pth.tar", "figures/clip/histogram_recall.png",
                     "my-runs/clip/metrics.json", "my-runs/clip/summary.md", "my-runs/report.pdf",
                     "my-runs/hand-in.json", "my-runs/clip/run.json",
                     "tests/__pycache__/test_x.cpython-311.pyc"):
        (project / relative).parent.mkdir(parents=True, exist_ok=True)
        (project / relative).write_bytes(b"not code")
    np.savez(project / "my-runs" / "clip" / "predictions.npz", logits=np.zeros(1))
    path, files = bundle.write_bundle(tmp_path / "out", project)
    names = zipfile.ZipFile(path).namelist()
    assert sorted(names) == ["code/README.md", "code/explorer/page.html", "code/requirements.txt",
                             "code/starter.py", "code/tests/test_x.py"]
    assert len(files) == len(names)


def project_files():
    """What git holds or would hold of this checkout (tracked, or untracked and not ignored),
    less its dotfiles (.gitignore, .ci/) and the placeholder of the empty figures/ folder: the
    tool's code, documents and tables. None outside a git checkout (an unpacked bundle)."""
    try:
        listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                                cwd=PROJECT_DIR, capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        return None
    if listed.returncode != 0:
        return None
    return sorted(name for name in listed.stdout.split("\0") if name and (PROJECT_DIR / name).is_file()
                  and not any(part.startswith(".") for part in Path(name).parts)
                  and name != "figures/.gitkeep")


def test_bundle_of_this_tool_from_the_command_line(tmp_path, capsys):
    expected = project_files()
    if expected is None:
        pytest.skip("not a git checkout: nothing independent to compare the bundle with")
    assert run_cli("--bundle", "--out", tmp_path) == 0
    names = zipfile.ZipFile(tmp_path / "code.zip").namelist()
    assert sorted(names) == [f"code/{name}" for name in expected]
    assert {"code/starter.py", "code/README.md", "code/requirements.txt", "code/constraints.txt",
            "code/tests/conftest.py", "code/benchmarks/RESULTS.md"} <= set(names)
    assert all(not name.endswith(FORBIDDEN) for name in names)
    printed = capsys.readouterr().out
    assert f"wrote {tmp_path / 'code.zip'} ({len(names)} files" in printed and "code/tests/: " in printed
