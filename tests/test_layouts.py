"""The same tiny dataset as an ImageFolder tree, as webdataset shards (3 uneven shards of 4, 3
and 5 samples, CLIP_benchmark's export), as Hugging Face parquet (2 files of several row groups)
and as a flat folder with Kaggle's labels CSV: every layout gives the folder's logits byte for
byte, in one process and (slow) in two under torchrun after an interruption; a corrupt shard
member is skipped or named as an unreadable file is."""
import tarfile

import numpy as np
import pytest

from demo import layouts, synthetic
from conftest import run_cli
from test_distributed import interrupted_in_process, parts, run_commands_in_one_job

CLASS_FOLDERS = ["annual_crop", "forest", "river"]
CLASS_NAMES = ["annual crop land", "forest", "river"]
TEMPLATES = ["a satellite photo of {c}.", "an aerial view of {c}."]
IMAGES_PER_CLASS = 4
IMAGES = len(CLASS_FOLDERS) * IMAGES_PER_CLASS
SHARD_SIZES = (4, 3, 5)  # uneven, IMAGES in all
BATCH, CHUNK = 2, 4
RESUMED_LAYOUTS = ["shards", "parquet", "flat"]  # resumed under torchrun: the folder's is test_distributed's


def write_dataset_files(folder, names=True):
    folder.mkdir(parents=True, exist_ok=True)
    if names:
        (folder / "classnames.txt").write_text("\n".join(CLASS_NAMES) + "\n")
    (folder / "zeroshot_classification_templates.txt").write_text("\n".join(TEMPLATES) + "\n")


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    """{layout: (--data, extra options)} of the one dataset written in the four layouts; the
    parquet copy is named by its metadata, the others by classnames.txt."""
    root = tmp_path_factory.mktemp("layouts")
    synthetic.write_image_folder(root / "folder" / "test", CLASS_FOLDERS, images_per_class=IMAGES_PER_CLASS,
                                 seed=3)
    samples = layouts.folder_samples(root / "folder" / "test")
    layouts.write_shards(samples, root / "shards" / "test", SHARD_SIZES)
    layouts.write_parquet(samples, root / "parquet" / "data", "test", files=2, row_group_size=2,
                          class_names=CLASS_NAMES)
    layouts.write_flat(samples, root / "flat" / "images", root / "flat" / "LOC_val_solution.csv")
    for folder in (root / "folder", root / "shards", root / "flat" / "images"):
        write_dataset_files(folder)
    write_dataset_files(root / "parquet", names=False)
    return {"folder": (root / "folder", []), "shards": (root / "shards", []),
            "parquet": (root / "parquet", []),
            "flat": (root / "flat" / "images", ["--labels", root / "flat" / "LOC_val_solution.csv"])}


@pytest.fixture(scope="module")
def weights(demo_inputs):
    return demo_inputs.clip_weights


def arguments(weights, data, out, layout, *extra):
    # One torch thread per process in every run: the logits' last bits depend on it.
    return ["--model", "clip", "--clip-weights", weights, "--data", data, "--split", "test",
            "--out", out, "--run-name", layout, "--device", "cpu", "--batch-size", BATCH,
            "--chunk-size", CHUNK, "--threads", 1, *extra]


def cache_of(run_dir):
    with np.load(run_dir / "predictions.npz") as cache:
        return {key: cache[key] for key in cache.files}


@pytest.fixture(scope="module")
def one_process_runs(datasets, weights, tmp_path_factory):
    """OUT after one in-process run of each layout (the text classifier computed once)."""
    out = tmp_path_factory.mktemp("out")
    for layout, (data, extra) in datasets.items():
        assert run_cli(*arguments(weights, data, out, layout, *extra, "--workers", 0)) == 0
    return out


@pytest.mark.parametrize("layout", ["shards", "parquet", "flat"])
def test_every_layout_gives_the_folders_logits(one_process_runs, layout):
    folder, other = (cache_of(one_process_runs / "test" / name) for name in ("folder", layout))
    assert other["logits"].tobytes() == folder["logits"].tobytes()
    assert other["image_features"].tobytes() == folder["image_features"].tobytes()
    assert other["labels"].tolist() == folder["labels"].tolist()
    assert other["names"].tolist() == CLASS_NAMES
    meta = str(other["meta"])
    assert f'"layout": "{layout}"' in meta and f'"image_files": {IMAGES}' in meta


def test_the_cache_records_the_index(one_process_runs, datasets):
    """The shards' keys are shard and member; their fingerprint is that of those keys and sizes,
    found here with tarfile alone; --from-cache on the same data makes no note."""
    import hashlib
    import json
    run_dir = one_process_runs / "test" / "shards"
    cache = cache_of(run_dir)
    members = []
    for shard in sorted((datasets["shards"][0] / "test").glob("*.tar")):
        with tarfile.open(shard) as archive:
            members += [(f"{shard.name}/{m.name}", m.size) for m in archive if not m.name.endswith(".cls")]
    assert cache["paths"].tolist() == [key for key, _ in members]
    expected = hashlib.sha256("\n".join(sorted(f"{key}\t{size}" for key, size in members)).encode())
    assert json.loads(str(cache["meta"]))["file_list_sha256"] == expected.hexdigest()
    assert list((one_process_runs / "cache").glob("shard-index-*.npz"))


def test_from_cache_notes_changed_shards(one_process_runs, datasets, weights, tmp_path, capsys):
    import shutil
    shutil.copytree(one_process_runs / "test" / "shards", tmp_path / "test" / "shards")
    data = tmp_path / "data"
    shutil.copytree(datasets["shards"][0], data)
    common = ["--model", "clip", "--from-cache", "--data", data, "--split", "test", "--out",
              tmp_path, "--run-name", "shards", "--clip-weights", weights]
    assert run_cli(*common) == 0
    assert "note:" not in capsys.readouterr().err
    (data / "test" / "2.tar").unlink()
    assert run_cli(*common) == 0
    assert f"other image files than {data / 'test'} holds now" in capsys.readouterr().err


@pytest.fixture
def corrupt_shards(datasets, tmp_path):
    """A copy of the shards whose 4th sample's image bytes are overwritten (tarfile finds where)."""
    import shutil
    data = tmp_path / "shards"
    shutil.copytree(datasets["shards"][0], data)
    with tarfile.open(data / "test" / "0.tar") as archive:
        member = [m for m in archive if not m.name.endswith(".cls")][3]
    with open(data / "test" / "0.tar", "r+b") as shard:
        shard.seek(member.offset_data)
        shard.write(b"\0" * member.size)
    return data, member.name


def test_a_corrupt_member_is_skipped_or_named(corrupt_shards, weights, tmp_path, capsys):
    data, member = corrupt_shards
    named = f"{data / 'test' / '0.tar'} member {member}"
    assert run_cli(*arguments(weights, data, tmp_path, "bad", "--workers", 0)) == 2
    error = capsys.readouterr().err
    assert f"error: cannot read {named}" in error and "--skip-bad-images" in error
    assert run_cli(*arguments(weights, data, tmp_path, "bad", "--workers", 0, "--skip-bad-images")) == 0
    assert f"skipped unreadable image {named}" in capsys.readouterr().err
    cache = cache_of(tmp_path / "test" / "bad")
    assert len(cache["logits"]) == IMAGES - 1 and f"0.tar/{member}" not in cache["paths"].tolist()
    assert f'"skipped": ["0.tar/{member}"]' in str(cache["meta"])


@pytest.fixture(scope="module")
def resumed_in_one_job(datasets, weights, tmp_path_factory):
    """{layout: (run folder, parts it had, the main process's output)} of each layout's run,
    interrupted after its first part, then resumed by torchrun with 2 processes (gloo), the three
    resumes in one job (run_commands_in_one_job)."""
    out = tmp_path_factory.mktemp("resumed")
    runs, finished = {}, {}
    for layout in RESUMED_LAYOUTS:
        data, extra = datasets[layout]
        argv = arguments(weights, data, out, layout, *extra)
        assert interrupted_in_process(argv) == 130
        finished[layout] = len(parts(out / "test" / layout))
        runs[layout] = [*argv, "--workers", 1]
    job, printed = run_commands_in_one_job(2, list(runs.values()))
    assert job.returncode == 0, job.stderr
    return {layout: (out / "test" / layout, finished[layout], output)
            for layout, output in zip(runs, printed)}


@pytest.mark.slow
@pytest.mark.parametrize("layout", RESUMED_LAYOUTS)
def test_interrupted_then_two_processes_give_the_folders_logits(resumed_in_one_job, one_process_runs,
                                                                layout):
    """The logits of the folder's one-process run, byte for byte (SIGKILLed processes' parts
    resume alike: test_faults)."""
    run_dir, finished, printed = resumed_in_one_job[layout]
    assert finished == 1
    assert f"inference: {IMAGES - CHUNK * finished} images" in printed and "(2 processes)" in printed
    folder = cache_of(one_process_runs / "test" / "folder")
    assert cache_of(run_dir)["logits"].tobytes() == folder["logits"].tobytes()


def test_the_devkits_ground_truth_gives_the_csvs_labels(datasets, tmp_path):
    """The devkit's one-number-a-line ground truth and its meta.mat (written here with scipy as the
    devkit's synsets struct: its IDs in another order than the wnids', and a synset with children
    that names no class) label the flat folder as Kaggle's CSV does."""
    from scipy.io import savemat
    from sources.flat import FlatSource
    folder, (_, csv_file) = datasets["flat"][0], datasets["flat"][1]
    by_csv = FlatSource(folder, csv_file)
    ids = {"river": 1, "annual_crop": 2, "forest": 3}  # the devkit's ILSVRC2012_IDs
    synsets = np.zeros(4, dtype=[("ILSVRC2012_ID", "O"), ("WNID", "O"), ("num_children", "O")])
    for row, (wnid, number) in enumerate([*ids.items(), ("n00000000", 4)]):
        synsets[row] = (number, wnid, 0 if row < 3 else 2)
    devkit = tmp_path / "data"
    devkit.mkdir()
    savemat(devkit / "meta.mat", {"synsets": synsets})
    truth = {key: str(by_csv.class_ids[label]) for key, label in zip(by_csv.keys(), by_csv.labels)}
    (devkit / "ground_truth.txt").write_text("".join(f"{ids[truth[name]]}\n" for name in sorted(truth)))
    by_devkit = FlatSource(folder, devkit / "ground_truth.txt")
    assert by_devkit.keys() == by_csv.keys() and by_devkit.class_ids == by_csv.class_ids
    assert by_devkit.labels.tolist() == by_csv.labels.tolist()


def test_a_label_without_a_class_name_stops_with_the_fix(datasets, tmp_path):
    import shutil
    from runs.outputs import UserError
    from sources import samples
    data = tmp_path / "shards"
    shutil.copytree(datasets["shards"][0], data)
    (data / "classnames.txt").write_text("annual crop land\nforest\n")  # labels go up to 2
    with pytest.raises(UserError, match=r"has the label 2, but the class list has 2 classes.*classnames.txt"):
        samples.describe_source(samples.open_source(data, "test")[1], prompts="single")
