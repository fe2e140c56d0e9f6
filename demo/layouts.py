"""One dataset written in every layout sources/ reads: webdataset shards as CLIP_benchmark writes
them, parquet files as Hugging Face writes them, and a flat folder with a labels CSV as Kaggle
gives ImageNet's validation set. For the tests and benchmarks/bench_layouts.py: each writes the
same image bytes, in the same order, as an ImageFolder tree holds them.
"""
import csv
import io
import json
import tarfile
from pathlib import Path

from sources.folder import FolderSource


def folder_samples(split_dir):
    """[(class folder, file name, image bytes, label)] of an ImageFolder tree, in its order."""
    source = FolderSource(split_dir)
    return [(source.class_ids[label], Path(key).name, source.read(index), int(label))
            for index, (key, label) in enumerate(zip(source.keys(), source.labels))]


def add_member(archive, name, data):
    info = tarfile.TarInfo(name)
    info.size, info.mtime = len(data), 0
    archive.addfile(info, io.BytesIO(data))


def write_shards(samples, folder, sizes):
    """folder/0.tar, 1.tar, ...: `sizes` samples each, a `<key>.<image extension>` and a
    `<key>.cls` member per sample (CLIP_benchmark's export), keys numbered across shards."""
    folder.mkdir(parents=True, exist_ok=True)
    assert sum(sizes) == len(samples)
    start, shards = 0, []
    for number, size in enumerate(sizes):
        shards.append(folder / f"{number}.tar")
        with tarfile.open(shards[-1], "w", format=tarfile.GNU_FORMAT) as archive:
            for key in range(start, start + size):
                _, name, data, label = samples[key]
                add_member(archive, f"s{key:07d}.{name.rpartition('.')[2].lower()}", data)
                add_member(archive, f"s{key:07d}.cls", str(label).encode())
        start += size
    return shards


def write_parquet(samples, folder, split, files, row_group_size, class_names=None):
    """folder/<split>-0000i-of-0000n.parquet as the hub writes an image dataset: an `image`
    struct (bytes, path) and an integer `label`, with the features in the schema's
    "huggingface" metadata (the ClassLabel's names when given)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    folder.mkdir(parents=True, exist_ok=True)
    label_feature = {"_type": "ClassLabel", **({"names": list(class_names)} if class_names else {})}
    metadata = {"huggingface": json.dumps({"info": {"features": {
        "image": {"_type": "Image"}, "label": label_feature}}})}
    bounds = [len(samples) * number // files for number in range(files + 1)]
    paths = []
    for number in range(files):
        rows = samples[bounds[number]:bounds[number + 1]]
        table = pa.table({
            "image": pa.array([{"bytes": data, "path": name} for _, name, data, _ in rows],
                              type=pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
            "label": pa.array([label for *_, label in rows], type=pa.int64())})
        paths.append(folder / f"{split}-{number:05d}-of-{files:05d}.parquet")
        pq.write_table(table.replace_schema_metadata(metadata), paths[-1], row_group_size=row_group_size)
    return paths


def write_flat(samples, folder, labels_file):
    """Every image in one folder, and Kaggle's LOC_val_solution.csv format: `ImageId` (the file
    name without its extension) and `PredictionString` (the label, then a box)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(labels_file, "w", newline="") as table:
        writer = csv.writer(table)
        writer.writerow(["ImageId", "PredictionString"])
        for class_folder, name, data, _ in samples:
            (folder / name).write_bytes(data)
            writer.writerow([name.rpartition(".")[0], f"{class_folder} 0 0 10 10"])
    return folder, labels_file
