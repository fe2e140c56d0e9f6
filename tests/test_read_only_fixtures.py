"""The check that keeps shared fixtures read-only (conftest.ReadOnlyFolders): it names each file
a test added, removed, changed or wrote again with the same bytes, and nothing else."""
import shutil

from conftest import ReadOnlyFolders


def test_every_write_into_a_registered_folder_is_named(tmp_path):
    shared = tmp_path / "shared"
    (shared / "run").mkdir(parents=True)
    for name in ("same.json", "changed.json", "removed.png", "read.json"):
        (shared / "run" / name).write_text(name)
    registry = ReadOnlyFolders()
    registry.register(shared)
    (shared / "run" / "read.json").read_text()
    shutil.copytree(shared / "run", tmp_path / "copy")  # what a test that writes does first
    (tmp_path / "copy" / "changed.json").write_text("elsewhere")
    assert registry.changes() == []
    (shared / "run" / "same.json").unlink()  # an atomic write: a new file, the same bytes
    (shared / "run" / "same.json").write_text("same.json")
    (shared / "run" / "changed.json").write_text("new content")
    (shared / "run" / "removed.png").unlink()
    (shared / "run" / "added.npz").write_bytes(b"")
    assert registry.changes() == [f"{shared}: added run/added.npz", f"{shared}: changed run/changed.json",
                                  f"{shared}: removed run/removed.png", f"{shared}: written again run/same.json"]
